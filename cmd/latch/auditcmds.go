package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/wire"
)

// auditPage is the page size of a JSON-lines export (the API's maximum).
const auditPage = 1000

func auditCommand() *command {
	return &command{name: "audit", summary: "list, export and verify the tamper-evident audit log (admin)",
		sub: []*command{auditListCommand(), auditVerifyCommand()}}
}

func auditListCommand() *command {
	return &command{
		name:    "list",
		summary: "list audit records, oldest first; --jsonl exports every matching record",
		usage:   "audit list [--action A] [--actor X] [--target T] [--since DUR] [--limit N] [--json | --jsonl]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			action := fs.String("action", "", "only records of `action`, e.g. node.enroll")
			actor := fs.String("actor", "", "only records whose actor contains `text` (a user, token:ID, key:ID, node:ID, system)")
			target := fs.String("target", "", "only records whose target contains `text`")
			since := fs.Duration("since", 0, "only records of the last `duration`, e.g. 24h")
			limit := fs.Int("limit", 0, "at most `N` records: the newest N (default 100); with --jsonl the first N (default all)")
			asJSON := fs.Bool("json", false, "print a JSON array")
			asJSONL := fs.Bool("jsonl", false, "export as JSON lines, one record per line, paging through the whole log")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("audit list", args, 0, ""); err != nil {
					return err
				}
				switch {
				case *since < 0:
					return usagef("audit list: --since must be positive")
				case *limit < 0:
					return usagef("audit list: --limit must be positive")
				case !*asJSONL && *limit > auditPage:
					return usagef("audit list: --limit is at most %d (use --jsonl to export more)", auditPage)
				case *asJSON && *asJSONL:
					return usagef("audit list: --json and --jsonl exclude each other")
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				q := url.Values{}
				for k, v := range map[string]string{"action": *action, "actor": *actor, "target": *target} {
					if v != "" {
						q.Set(k, v)
					}
				}
				if *since > 0 {
					q.Set("since", since.String())
				}
				if *asJSONL {
					return exportAudit(ctx, c, q, *limit, e.stdout)
				}
				if *limit > 0 {
					q.Set("limit", strconv.Itoa(*limit))
				}
				recs := []wire.AuditRecord{}
				if err := c.do(ctx, http.MethodGet, wire.PathAudit+"?"+q.Encode(), nil, &recs); err != nil {
					return fmt.Errorf("listing audit records: %w", err)
				}
				if *asJSON {
					return writeJSON(e.stdout, recs)
				}
				printAudit(e.stdout, recs)
				return nil
			}
		},
	}
}

// exportAudit writes every record matching q as JSON lines (at most limit
// when positive), fetching pages after the last seq seen.
func exportAudit(ctx context.Context, c *adminClient, q url.Values, limit int, w io.Writer) error {
	enc := json.NewEncoder(w)
	var after int64
	written := 0
	for {
		page := auditPage
		if limit > 0 {
			page = min(page, limit-written)
		}
		q.Set("after_seq", strconv.FormatInt(after, 10))
		q.Set("limit", strconv.Itoa(page))
		var recs []wire.AuditRecord
		if err := c.do(ctx, http.MethodGet, wire.PathAudit+"?"+q.Encode(), nil, &recs); err != nil {
			return fmt.Errorf("exporting audit records after %d: %w", after, err)
		}
		for _, r := range recs {
			if err := enc.Encode(r); err != nil {
				return fmt.Errorf("writing audit records: %w", err)
			}
			after = r.Seq
		}
		written += len(recs)
		if len(recs) < page || (limit > 0 && written >= limit) {
			return nil
		}
	}
}

func printAudit(w io.Writer, recs []wire.AuditRecord) {
	if len(recs) == 0 {
		fmt.Fprintln(w, "no audit records")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tTARGET\tSUMMARY")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.Local().Format(time.RFC3339), flatField(r.Actor), r.Action,
			flatField(r.Target), flatField(string(r.Summary)))
	}
	tw.Flush()
}

// flatField keeps a field on its row: control characters become spaces.
func flatField(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func auditVerifyCommand() *command {
	return &command{
		name:    "verify",
		summary: "re-walk the audit log's hash chain: OK with the count, or the first broken record",
		usage:   "audit verify [--anchor SEQ:HASH | --anchor-file FILE] [--json]",
		flags: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			af := addAdminFlags(fs, e)
			anchor := fs.String("anchor", "", "an earlier verification's `SEQ:HASH`: also fail if that record was removed or rewritten")
			anchorFile := fs.String("anchor-file", "", "read the anchor from `FILE` if it exists and store the new head there after a good run; keep it off the coordinator")
			asJSON := fs.Bool("json", false, "print JSON (exit status 1 still reports a broken chain)")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs("audit verify", args, 0, ""); err != nil {
					return err
				}
				if *anchor != "" && *anchorFile != "" {
					return usagef("audit verify: --anchor and --anchor-file exclude each other")
				}
				from := strings.TrimSpace(*anchor)
				if *anchorFile != "" {
					b, err := os.ReadFile(*anchorFile)
					switch {
					case err == nil:
						from = strings.TrimSpace(string(b))
					case !errors.Is(err, os.ErrNotExist):
						return fmt.Errorf("reading the audit anchor: %v", err)
					}
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				path := wire.PathAuditVerify
				if from != "" {
					path += "?anchor=" + url.QueryEscape(from)
				}
				var resp wire.AuditVerifyResponse
				if err := c.do(ctx, http.MethodGet, path, nil, &resp); err != nil {
					return fmt.Errorf("verifying the audit log: %w", err)
				}
				if *asJSON {
					if err := writeJSON(e.stdout, resp); err != nil {
						return err
					}
				}
				if !resp.OK {
					return fmt.Errorf("audit log broken at record %d: %s (%d records before it verify)", resp.BrokenSeq, resp.Problem, resp.Count)
				}
				if *anchorFile != "" && resp.Anchor != "" {
					if err := writeFileAtomic(*anchorFile, []byte(resp.Anchor+"\n")); err != nil {
						return fmt.Errorf("storing the audit anchor: %v", err)
					}
				}
				if !*asJSON {
					if resp.Count == 0 {
						fmt.Fprintln(e.stdout, "audit log OK: no records yet")
					} else {
						fmt.Fprintf(e.stdout, "audit log OK: %d records, head %s\n", resp.Count, resp.Head)
					}
					if resp.Anchor != "" {
						fmt.Fprintf(e.stdout, "anchor: %s (keep it off the coordinator; pass it to --anchor to detect removed records)\n", resp.Anchor)
					}
				}
				return nil
			}
		},
	}
}

// writeFileAtomic replaces name with data, never leaving a partial file.
func writeFileAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
