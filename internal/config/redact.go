package config

import (
	"encoding/json"
	"regexp"
)

// passwordInURL matches the password of a URL's userinfo (postgres://user:PASSWORD@host).
var passwordInURL = regexp.MustCompile(`(://[^:/@\s"]*:)[^@\s"]*@`)

// Redacted is the configuration as a JSON object with every password in a URL replaced, fit for logs and
// the audit log. Secrets that are not in URLs never reach Config (keys are files, credentials come from the
// environment the AWS way).
func (c Config) Redacted() json.RawMessage {
	b, err := json.Marshal(c)
	if err != nil { // of plain fields: cannot fail
		panic(err)
	}
	return passwordInURL.ReplaceAll(b, []byte("${1}xxxxx@"))
}
