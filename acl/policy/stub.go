package policy

import "errors"

// Placeholder so dependants compile while the parser is written; replaced
// by the real implementation before anything lands.
func Parse(src []byte) (*Policy, error) { return nil, errors.New("policy: parser not written yet") }

func (e *Error) Error() string { return e.Msg }
