package analytics

import (
	"context"
	"embed"
	"io/fs"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/blackfriday-kafka/shop/schemas"
	"github.com/blackfriday-kafka/shop/services/serve"
	"github.com/blackfriday-kafka/shop/txn/lag"
	"github.com/blackfriday-kafka/shop/txn/sink"
)

// web is the dashboard: plain HTML, CSS and JS, and uPlot for the charts
// (web/vendor), served as they are.
//
//go:embed web
var web embed.FS

// DashboardGroups are the consumer groups the dashboard shows: the two
// exactly-once stages, the email delivery loop, and analytics' own, whose
// members each hold partition p of every topic it reads.
var DashboardGroups = []string{schemas.Group("order"), schemas.Group("email"), schemas.DeliveryGroup, schemas.Group("analytics")}

// groupsEvery is how often the dashboard's view of the groups is refreshed.
const groupsEvery = 2 * time.Second

// Dashboard is /analytics/dashboard: everything the page shows, in one answer
// so that its numbers agree with each other.
type Dashboard struct {
	Analytics ReportAll    `json:"analytics"` // as /analytics
	History   History      `json:"history"`
	Groups    lag.Snapshot `json:"groups"`
	Producers []Producer   `json:"producers"`
	// Edge is the payment service's admission: admitted, shed, the bound.
	Edge Edge `json:"edge"`
	// Emails is the delivery queue: committed emails the mail server has
	// not answered for yet.
	Emails sink.Undelivered `json:"emails"`
	Now    time.Time        `json:"now"`
}

func (s *Service) dashboard(ctx context.Context, now time.Time) Dashboard {
	figures, cov := s.gather(ctx)
	return Dashboard{
		Analytics: ReportAll{Report: figures.report(now), Coverage: cov},
		History:   figures.history(now),
		Groups:    s.groups.Last(),
		Producers: s.producers.Last(),
		Edge:      s.edge.Last(),
		Emails:    s.emails.Undelivered(),
		Now:       now,
	}
}

func (s *Service) dashboardRoutes(r *mux.Router) {
	static, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	index, err := fs.ReadFile(static, "index.html")
	if err != nil {
		panic(err)
	}
	r.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(index)
	}).Methods(http.MethodGet)
	r.PathPrefix("/dashboard/").Handler(http.StripPrefix("/dashboard/", http.FileServerFS(filesOnly{static}))).Methods(http.MethodGet)
	r.HandleFunc("/analytics/dashboard", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		serve.JSON(w, http.StatusOK, s.dashboard(req.Context(), time.Now()))
	}).Methods(http.MethodGet)
}

// filesOnly is a tree of files without its directories: a path that names
// one is a 404, never a listing of what is in it.
type filesOnly struct{ fs.FS }

func (f filesOnly) Open(name string) (fs.File, error) {
	file, err := f.FS.Open(name)
	if err != nil {
		return nil, err
	}
	if st, err := file.Stat(); err != nil || st.IsDir() {
		file.Close()
		return nil, fs.ErrNotExist
	}
	return file, nil
}
