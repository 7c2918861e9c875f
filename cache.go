package main

// pfcon polls every job's status until it finishes, so GET is the hot path.
// Two things keep it to the fewest scheduler calls, the same for every
// backend: a finished job's answer is kept in memory (it can no longer
// change), and concurrent GETs of one jid share one set of calls.

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// The cache's bounds. An answer carries up to JOB_LOGS_TAIL lines of logs
// (often a few KiB, at most some hundred KiB), so the byte bound is the one
// that usually binds.
const (
	cacheMaxEntries = 10000
	cacheMaxBytes   = 32 << 20
	// cacheTTL is how long a finished job is answered from memory. A job
	// removed behind pman's back (docker rm, kubectl delete, a Job's TTL)
	// is answered as finished for at most this long after its last GET;
	// a DELETE through pman forgets it at once.
	cacheTTL = 10 * time.Minute
	// sharedGetTimeout bounds a scheduler GET shared by concurrent
	// requests: it outlives any one requester, so it needs its own bound.
	sharedGetTimeout = 60 * time.Second
)

// jobCache holds the encoded answers of finished jobs, least recently used
// first out, bounded in entries and bytes; each entry expires ttl after it
// was stored.
type jobCache struct {
	maxEntries, maxBytes int
	ttl                  time.Duration
	now                  func() time.Time

	mu    sync.Mutex
	lru   *list.List // of *cacheEntry, most recently used at the front
	byJID map[string]*list.Element
	bytes int
	// epoch counts evictions. A GET notes it before it asks the scheduler
	// and stores its answer only if no eviction happened meanwhile, so an
	// answer read before a DELETE or a POST is never stored after it.
	epoch uint64
}

type cacheEntry struct {
	jid     string
	body    []byte // the JSON answer, as written
	status  string
	expires time.Time
}

func newJobCache(maxEntries, maxBytes int, ttl time.Duration) *jobCache {
	return &jobCache{maxEntries: maxEntries, maxBytes: maxBytes, ttl: ttl, now: time.Now,
		lru: list.New(), byJID: map[string]*list.Element{}}
}

// get returns the cached answer of jid and its status, if any and fresh.
func (c *jobCache) get(jid string) (body []byte, status string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byJID[jid]
	if !ok {
		return nil, "", false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.removeLocked(el)
		return nil, "", false
	}
	c.lru.MoveToFront(el)
	return e.body, e.status, true
}

// mark returns the current epoch, to be passed to put.
func (c *jobCache) mark() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// put stores a finished job's answer, unless an eviction happened since
// mark answered epoch, or the answer alone is over the byte bound.
func (c *jobCache) put(jid, status string, body []byte, epoch uint64) {
	if len(body) > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	if el, ok := c.byJID[jid]; ok {
		c.removeLocked(el)
	}
	c.byJID[jid] = c.lru.PushFront(&cacheEntry{jid: jid, body: body, status: status, expires: c.now().Add(c.ttl)})
	c.bytes += len(body)
	for c.lru.Len() > c.maxEntries || c.bytes > c.maxBytes {
		c.removeLocked(c.lru.Back())
	}
}

// evict forgets jid, and makes every GET under way forget what it read.
func (c *jobCache) evict(jid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if el, ok := c.byJID[jid]; ok {
		c.removeLocked(el)
	}
}

func (c *jobCache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.byJID, e.jid)
	c.bytes -= len(e.body)
}

// size returns the number of entries and their bytes.
func (c *jobCache) size() (entries, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.bytes
}

// finished reports whether a job's answer can no longer change: its status
// is final and its logs were read in full (see logsUnreadable).
func finished(j *job) bool {
	return (j.Status == statusSuccess || j.Status == statusError) && !j.LogsIncomplete
}

// statusReader reads the status GETs return: from the cache, else through one
// scheduler call shared by every concurrent GET of the same jid.
type statusReader struct {
	sched  scheduler
	cache  *jobCache
	flight singleflight.Group
	m      *metrics
}

// answer is one status answer: the job and its encoded JSON.
type answer struct {
	status string
	body   []byte
}

// read returns jid's status. The scheduler call is shared and runs to its
// own bound even when the request that started it goes away, so that the
// others waiting on it still get their answer; a request that goes away
// stops waiting.
func (s *statusReader) read(ctx context.Context, jid string) (answer, error) {
	if body, status, ok := s.cache.get(jid); ok {
		s.m.cacheHits.Inc()
		return answer{status, body}, nil
	}
	ch := s.flight.DoChan(jid, func() (any, error) {
		// Another flight may have stored it since this request looked.
		if body, status, ok := s.cache.get(jid); ok {
			return answer{status, body}, nil
		}
		epoch := s.cache.mark()
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedGetTimeout)
		defer cancel()
		j, err := s.sched.get(gctx, jid)
		if err != nil {
			return answer{}, err
		}
		a := answer{j.Status, encodeJSON(j)}
		if finished(j) {
			s.cache.put(jid, j.Status, a.body, epoch)
		}
		return a, nil
	})
	// Counted once the request has joined a flight (DoChan joins at once).
	s.m.cacheMisses.Inc()
	select {
	case res := <-ch:
		if res.Err != nil {
			return answer{}, res.Err
		}
		return res.Val.(answer), nil
	case <-ctx.Done():
		return answer{}, errorf(eUnavailable, "the request ended before the scheduler answered: %v", ctx.Err())
	}
}

// forget makes pman forget what it knows of jid: the cached answer, what
// GETs under way read, and the shared call itself, so that a GET that
// comes after a DELETE or a new POST asks the scheduler afresh.
func (s *statusReader) forget(jid string) {
	s.cache.evict(jid)
	s.flight.Forget(jid)
}

// encodeJSON is v's JSON as writeJSON writes it.
func encodeJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Commands and logs are answered as they are, as Flask did: no \u003c.
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return buf.Bytes()
}
