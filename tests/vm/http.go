package vm

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// HTTPGet fetches path from the guest's port 80 through the host forward,
// retrying until ctx ends: a container may still be starting. It returns
// the body of the first 200 answer.
func HTTPGet(ctx context.Context, port int, path string) (string, error) {
	url := "http://127.0.0.1:" + strconv.Itoa(port) + path
	client := &http.Client{Timeout: 15 * time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", fmt.Errorf("get %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return string(body), nil
			}
			last = fmt.Errorf("status %s, read error %v", resp.Status, rerr)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("get %s: %w (last: %v)", url, ctx.Err(), last)
		case <-time.After(time.Second):
		}
	}
}
