package registry

import (
	"net/http"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

// modeAnswer is a mode as Confluent shows it.
type modeAnswer struct {
	Mode string `json:"mode"`
}

// getMode answers GET /mode, and GET /mode/{subject}: the subject's own
// mode; without one, 40409, or the global mode with
// ?defaultToGlobal=true.
func (r *Registry) getMode(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	if subject == "" || flag(req, "defaultToGlobal") {
		return modeAnswer{r.st.modeOf(subject)}, nil
	}
	if subj := r.st.subjects[subject]; subj != nil && subj.mode != nil {
		return modeAnswer{*subj.mode}, nil
	}
	return nil, errf(http.StatusNotFound, 40409, "Subject '%s' does not have subject-level mode configured", subject)
}

// putMode sets the global mode (PUT /mode) or a subject's: READWRITE or
// READONLY, in any case. It answers the mode set.
func (r *Registry) putMode(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	var body modeAnswer
	if err := decodeBody(req, &body); err != nil {
		return nil, errf(http.StatusUnprocessableEntity, 42204, "Invalid mode: %v", err)
	}
	mode := strings.ToUpper(body.Mode)
	switch mode {
	case modeReadWrite, modeReadOnly:
	case "IMPORT", "READONLY_OVERRIDE":
		return nil, errf(http.StatusUnprocessableEntity, 42204,
			"Invalid mode %s: this registry supports READWRITE and READONLY only", mode)
	default:
		return nil, errf(http.StatusUnprocessableEntity, 42204, "Invalid mode %q. Valid values are READWRITE and READONLY", body.Mode)
	}
	err := r.write(req.Context(), func(st *state) ([]*kgo.Record, error) {
		current := st.mode
		if subject != "" {
			current = nil
			if subj := st.subjects[subject]; subj != nil {
				current = subj.mode
			}
		}
		if current != nil && *current == mode {
			return nil, nil
		}
		return []*kgo.Record{record(encodeModeKey(subject), encodeModeValue(mode))}, nil
	})
	if err != nil {
		return nil, err
	}
	return modeAnswer{mode}, nil
}

// deleteMode removes a subject's own mode (DELETE /mode/{subject}; 40401
// when it has none), or the global one (DELETE /mode), which goes back to
// READWRITE. It answers the mode that was removed.
func (r *Registry) deleteMode(req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	var was string
	err := r.write(req.Context(), func(st *state) ([]*kgo.Record, error) {
		if subject == "" {
			was = st.modeOf("")
			if st.mode == nil {
				return nil, nil
			}
		} else {
			subj := st.subjects[subject]
			if subj == nil || subj.mode == nil {
				return nil, errf(http.StatusNotFound, sr.ErrSubjectNotFound.Code, "Subject '%s' not found.", subject)
			}
			was = *subj.mode
		}
		return []*kgo.Record{record(encodeModeKey(subject), nil)}, nil
	})
	if err != nil {
		return nil, err
	}
	return modeAnswer{was}, nil
}
