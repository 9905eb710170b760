package slipway

// Page is the envelope of the API's list responses: one page of Items from Offset, at most Limit of them,
// and the Total number that match.
type Page[T any] struct {
	Items  []T `json:"items"`
	Total  int `json:"total"`
	Offset int `json:"offset"`
	Limit  int `json:"limit"`
}
