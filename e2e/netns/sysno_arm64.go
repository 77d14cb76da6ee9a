package netns

// sysSetns is setns(2)'s number here; the syscall package does not name
// it, and the harness avoids a direct golang.org/x/sys dependency.
const sysSetns = 268
