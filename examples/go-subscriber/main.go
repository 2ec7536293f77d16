// Command go-subscriber reads a partner's own Tsunagu topic with the partner's SCRAM-SHA-512
// credentials and checks every record against the contracts' JSON Schemas, chosen by the record's
// `ce_type` header (CloudEvents Kafka binding, binary mode: the value is the event data).
//
// It prints one line per record, "type=<ce_type> id=<ce_id> valid" or "... invalid: <reasons>",
// and commits the offsets of the records it has printed. The reasons name the place in the data and
// the schema keyword that failed, never the value found there; the password is never printed.
//
// Settings come from the environment (see README.md); -records and -timeout bound a run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

type config struct {
	bootstrap, username, password, topic, group, schemas string
	records                                              int
	timeout                                              time.Duration
}

func main() {
	cfg, err := load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-subscriber:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "go-subscriber:", err)
		os.Exit(1)
	}
}

func load() (config, error) {
	cfg := config{
		bootstrap: os.Getenv("TSUNAGU_KAFKA_BOOTSTRAP"),
		username:  os.Getenv("TSUNAGU_KAFKA_USERNAME"),
		password:  os.Getenv("TSUNAGU_KAFKA_PASSWORD"),
		topic:     os.Getenv("TSUNAGU_KAFKA_TOPIC"),
		group:     os.Getenv("TSUNAGU_KAFKA_GROUP"),
		schemas:   os.Getenv("TSUNAGU_SCHEMAS_DIR"),
	}
	if cfg.bootstrap == "" {
		cfg.bootstrap = "127.0.0.1:9092"
	}
	if cfg.schemas == "" {
		cfg.schemas = filepath.Join("..", "..", "contracts", "schemas")
	}
	flag.IntVar(&cfg.records, "records", 0, "exit after this many records (0: run until interrupted)")
	flag.DurationVar(&cfg.timeout, "timeout", 0, "give up after this long, with exit status 1 (0: never)")
	flag.Parse()
	var missing []string
	for name, value := range map[string]string{"TSUNAGU_KAFKA_USERNAME": cfg.username,
		"TSUNAGU_KAFKA_PASSWORD": cfg.password, "TSUNAGU_KAFKA_TOPIC": cfg.topic, "TSUNAGU_KAFKA_GROUP": cfg.group} {
		if value == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return cfg, fmt.Errorf("set %s in the environment", strings.Join(missing, ", "))
	}
	return cfg, nil
}

func run(cfg config) error {
	schemas, err := loadSchemas(cfg.schemas)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
	}
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(cfg.bootstrap, ",")...),
		kgo.SASL(scram.Auth{User: cfg.username, Pass: cfg.password}.AsSha512Mechanism()),
		kgo.ConsumerGroup(cfg.group),
		kgo.ConsumeTopics(cfg.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Offsets are committed for the records printed, after they are printed: a crash in between
		// shows a record again rather than never.
		kgo.DisableAutoCommit(),
	)
	if err != nil {
		return err
	}
	defer client.Close()
	// A wrong password or an unknown user would otherwise only show as records that never come.
	if err := client.Ping(ctx); err != nil {
		return fmt.Errorf("connecting to %s as %s: %w", cfg.bootstrap, printable(cfg.username), err)
	}

	seen := 0
	for cfg.records == 0 || seen < cfg.records {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%d of %d records within %s", seen, cfg.records, cfg.timeout)
			}
			return nil // interrupted
		}
		for _, fetchErr := range fetches.Errors() {
			if !kerr.IsRetriable(fetchErr.Err) {
				return fmt.Errorf("reading %s: %w", fetchErr.Topic, fetchErr.Err)
			}
			fmt.Fprintf(os.Stderr, "go-subscriber: reading %s (retrying): %v\n", fetchErr.Topic, fetchErr.Err)
		}
		var done []*kgo.Record
		fetches.EachRecord(func(record *kgo.Record) {
			if cfg.records > 0 && seen >= cfg.records {
				return
			}
			fmt.Println(describe(record, schemas))
			done = append(done, record)
			seen++
		})
		if len(done) > 0 {
			if err := client.CommitRecords(context.Background(), done...); err != nil {
				return fmt.Errorf("committing offsets: %w", err)
			}
		}
	}
	return nil
}

// loadSchemas compiles every `<event type>.json` in dir, keyed by event type.
func loadSchemas(dir string) (map[string]*jsonschema.Schema, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no JSON Schemas in %s (set TSUNAGU_SCHEMAS_DIR to contracts/schemas)", dir)
	}
	compiler := jsonschema.NewCompiler()
	compiler.AssertFormat() // uuid, date and date-time are checked, not only annotated
	schemas := make(map[string]*jsonschema.Schema, len(files))
	for _, file := range files {
		schema, err := compiler.Compile(file)
		if err != nil {
			return nil, fmt.Errorf("compiling %s: %w", file, err)
		}
		schemas[strings.TrimSuffix(filepath.Base(file), ".json")] = schema
	}
	return schemas, nil
}

func header(record *kgo.Record, key string) string {
	for _, h := range record.Headers {
		if strings.EqualFold(h.Key, key) {
			return string(h.Value)
		}
	}
	return ""
}

// describe is the record's one line: its type, its id and whether its data fits the schema.
func describe(record *kgo.Record, schemas map[string]*jsonschema.Schema) string {
	eventType, id := header(record, "ce_type"), header(record, "ce_id")
	line := fmt.Sprintf("type=%s id=%s", printable(eventType), printable(id))
	if problem := check(record, eventType, id, schemas); problem != "" {
		return line + " invalid: " + problem
	}
	return line + " valid"
}

func check(record *kgo.Record, eventType, id string, schemas map[string]*jsonschema.Schema) string {
	switch {
	case eventType == "":
		return "no ce_type header"
	case id == "":
		return "no ce_id header"
	case header(record, "ce_specversion") != "1.0":
		return "ce_specversion is not 1.0"
	case !strings.HasPrefix(header(record, "content-type"), "application/json"):
		return "content-type is not application/json"
	}
	schema, known := schemas[eventType]
	if !known {
		return "no schema for this event type in contracts/schemas"
	}
	data, err := jsonschema.UnmarshalJSON(strings.NewReader(string(record.Value)))
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "the value is empty"
		}
		return "the value is not JSON"
	}
	var invalid *jsonschema.ValidationError
	if err := schema.Validate(data); errors.As(err, &invalid) {
		return reasons(invalid)
	} else if err != nil {
		return err.Error()
	}
	return ""
}

var english = message.NewPrinter(language.English)

// reasons lists the leaf errors as "<place in the data>: <keyword>". Only the kinds whose message
// holds property names or JSON types, never a value from the record, add their message.
func reasons(root *jsonschema.ValidationError) string {
	var out []string
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, cause := range e.Causes {
				walk(cause)
			}
			return
		}
		place := "/" + strings.Join(e.InstanceLocation, "/")
		text := strings.Join(e.ErrorKind.KeywordPath(), "/")
		switch e.ErrorKind.(type) {
		case *kind.Required, *kind.AdditionalProperties, *kind.Type:
			text += " (" + e.ErrorKind.LocalizedString(english) + ")"
		}
		out = append(out, place+": "+text)
	}
	walk(root)
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// printable keeps a header's text on one line of plain characters.
func printable(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return r
		}
		return '?'
	}, s)
}
