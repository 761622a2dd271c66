package fakeapi

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// bigIntBase is 2^53 + 1: externalRef values are odd numbers above it, which
// a float64 cannot represent, so any rounding on the way through Ferry shows.
const bigIntBase = 9007199254740993

var (
	firstNames = []string{"Ola", "Kari", "Nils", "Ingrid", "Lars", "Sofie", "Jonas", "Emma", "Aksel", "Nora",
		"Henrik", "Maja", "Oskar", "Ella", "Filip", "Leah", "Elias", "Sara", "Jakob", "Ida", "Zoë", "Søren"}
	lastNames = []string{"Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen",
		"Jensen", "Karlsen", "Berg", "Haugen", "Hagen", "Johannessen", "Eriksen", "Dahl", "Østby", "Ødegård"}
	streets = []string{"Storgata", "Kirkeveien", "Parkveien", "Skolegata", "Strandgata", "Bjørnstjerne Bjørnsons gate",
		"Markveien", "Torggata", "Sjøgata", "Fjellveien"}
	cities = []struct{ city, zip, country string }{
		{"Oslo", "0150", "NO"}, {"Bergen", "5003", "NO"}, {"Trondheim", "7011", "NO"}, {"Stavanger", "4006", "NO"},
		{"Tromsø", "9008", "NO"}, {"Göteborg", "41101", "SE"}, {"København", "1050", "DK"}, {"Helsinki", "00100", "FI"},
	}
	adjectives = []string{"Classic", "Smart", "Compact", "Deluxe", "Eco", "Ultra", "Rustic", "Nordic", "Modular", "Quiet"}
	nouns      = []string{"Chair", "Lamp", "Kettle", "Backpack", "Jacket", "Desk", "Speaker", "Bottle", "Router", "Tent"}
	categories = []string{"furniture", "lighting", "kitchen", "outdoor", "clothing", "electronics"}
	currencies = []string{"NOK", "SEK", "DKK", "EUR"}
	statuses   = []string{"draft", "sent", "paid", "overdue", "credited"}
)

// generator makes the deterministic seed records of one collection.
type generator struct {
	rng       *rand.Rand
	base      time.Time
	customers int // for invoice.customerId
	products  int // for invoice lines
}

func newGenerator(seed uint64, collection string, base time.Time, counts map[string]int) *generator {
	h := fnv.New64a()
	h.Write([]byte(collection))
	return &generator{
		rng:       rand.New(rand.NewPCG(seed, h.Sum64())),
		base:      base,
		customers: max(counts["customers"], 1000),
		products:  max(counts["products"], 500),
	}
}

func num(n int64) json.Number { return json.Number(strconv.FormatInt(n, 10)) }

// decimal formats cents as an exact two-decimal number text.
func decimal(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s%d.%02d", sign, cents/100, cents%100)
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// record returns the i-th (1-based) record of a collection; its
// lastChanged is base + i minutes, so seed order is id order.
func (g *generator) record(collection string, i int64) map[string]any {
	updated := g.base.Add(time.Duration(i) * time.Minute)
	created := updated.Add(-time.Duration(g.rng.IntN(1000*24)) * time.Hour)
	m := map[string]any{
		fieldID:          num(i),
		fieldLastChanged: updated.Format(TimeFormat),
		"createdAt":      created.Format(TimeFormat),
		"externalRef":    num(bigIntBase + 2*i),
	}
	switch collection {
	case "customers":
		first, last := pick(g.rng, firstNames), pick(g.rng, lastNames)
		loc := pick(g.rng, cities)
		m["firstName"] = first
		m["lastName"] = last
		m["name"] = first + " " + last
		m["email"] = strings.ToLower(asciiFold(first)+"."+asciiFold(last)) + strconv.FormatInt(i, 10) + "@example.com"
		m["phone"] = fmt.Sprintf("+47 %08d", 40000000+g.rng.IntN(59999999))
		m["address"] = map[string]any{
			"street":  fmt.Sprintf("%s %d", pick(g.rng, streets), 1+g.rng.IntN(120)),
			"zip":     loc.zip,
			"city":    loc.city,
			"country": loc.country,
		}
		m["active"] = g.rng.IntN(10) != 0
		m["tags"] = []any{pick(g.rng, []string{"vip", "b2b", "b2c", "newsletter"}), pick(g.rng, categories)}
		m["balance"] = json.Number(decimal(int64(g.rng.IntN(2000000)) - 200000))
		m["creditLimit"] = decimal(int64(g.rng.IntN(50)+1) * 100000)
		m["score"] = json.Number(strconv.FormatFloat(float64(g.rng.IntN(1000))/10, 'f', 1, 64))
	case "products":
		m["sku"] = fmt.Sprintf("SKU-%06d", i)
		m["name"] = pick(g.rng, adjectives) + " " + pick(g.rng, nouns)
		m["category"] = pick(g.rng, categories)
		m["price"] = json.Number(decimal(int64(g.rng.IntN(500000) + 990)))
		m["currency"] = "NOK"
		m["stock"] = num(int64(g.rng.IntN(500)))
		m["weightKg"] = json.Number(fmt.Sprintf("%d.%03d", g.rng.IntN(40), g.rng.IntN(1000)))
		m["dimensions"] = map[string]any{
			"widthCm":  num(int64(5 + g.rng.IntN(200))),
			"heightCm": num(int64(5 + g.rng.IntN(200))),
			"depthCm":  num(int64(5 + g.rng.IntN(200))),
		}
		m["gtin"] = num(7_000_000_000_000 + i)
		m["active"] = g.rng.IntN(20) != 0
	case "invoices":
		lines := make([]any, 1+g.rng.IntN(4))
		var total int64
		for j := range lines {
			qty := int64(1 + g.rng.IntN(10))
			unit := int64(g.rng.IntN(100000) + 500)
			total += qty * unit
			lines[j] = map[string]any{
				"line":      num(int64(j + 1)),
				"productId": num(int64(1 + g.rng.IntN(g.products))),
				"quantity":  num(qty),
				"unitPrice": json.Number(decimal(unit)),
				"amount":    json.Number(decimal(qty * unit)),
			}
		}
		issued := created.Truncate(24 * time.Hour)
		m["invoiceNumber"] = fmt.Sprintf("INV-%d-%06d", issued.Year(), i)
		m["customerId"] = num(int64(1 + g.rng.IntN(g.customers)))
		m["issueDate"] = issued.Format("2006-01-02")
		m["dueDate"] = issued.AddDate(0, 0, 30).Format("2006-01-02")
		m["currency"] = pick(g.rng, currencies)
		m["status"] = pick(g.rng, statuses)
		m["lines"] = lines
		m["total"] = json.Number(decimal(total))
		m["vatRate"] = json.Number("0.25")
	default:
		m["name"] = fmt.Sprintf("%s %s %d", pick(g.rng, adjectives), collection, i)
		m["value"] = num(int64(g.rng.IntN(1_000_000)))
		m["amount"] = json.Number(decimal(int64(g.rng.IntN(10_000_000))))
		m["flag"] = g.rng.IntN(2) == 0
	}
	return m
}

var foldReplacer = strings.NewReplacer("ø", "o", "Ø", "O", "å", "a", "Å", "A", "æ", "ae", "Æ", "AE",
	"ö", "o", "ä", "a", "ë", "e")

func asciiFold(s string) string { return foldReplacer.Replace(s) }
