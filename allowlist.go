package main

// The image allowlist (JOB_IMAGE_ALLOWLIST), and the image checks every
// backend shares.

import (
	"fmt"
	"path"
	"strings"

	"github.com/distribution/reference"
)

// imageAllowlist is JOB_IMAGE_ALLOWLIST: the images jobs may run. nil allows
// every image.
type imageAllowlist []imagePattern

// imagePattern is one pattern of the allowlist, a path.Match glob over the
// image's full reference ("ghcr.io/fnndsc/pl-*", "docker.io/fnndsc/*:1.*").
type imagePattern struct {
	glob string
	// withTag is true when the pattern says a tag or a digest (a ':' or '@'
	// after its last '/'): it is then matched against name:tag@digest, and
	// otherwise against the repository name alone, so that it allows every
	// tag and digest of the repositories it names.
	withTag bool
}

// parseImageAllowlist returns the patterns of JOB_IMAGE_ALLOWLIST's items,
// and one error for each item that is not a pattern pman can match.
func parseImageAllowlist(items []string) (imageAllowlist, []error) {
	var l imageAllowlist
	var errs []error
	for _, p := range items {
		ip, err := parseImagePattern(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		l = append(l, ip)
	}
	return l, errs
}

// parseImagePattern returns the pattern p, or why it is refused. Patterns are
// written in the form pman compares images in (docker.io/library/ubuntu, not
// ubuntu): a pattern in a short form would never match anything, and would
// fail every job without saying why.
func parseImagePattern(p string) (imagePattern, error) {
	if _, err := path.Match(p, ""); err != nil {
		return imagePattern{}, fmt.Errorf("%q is not a pattern: %v", p, err)
	}
	if strings.ContainsAny(p, " \t\n") {
		return imagePattern{}, fmt.Errorf("%q contains a space", p)
	}
	name, withTag := p, false
	last := strings.LastIndexByte(p, '/')
	if i := strings.IndexAny(p[last+1:], ":@"); i >= 0 {
		name, withTag = p[:last+1+i], true
	}
	domain, rest, ok := strings.Cut(name, "/")
	if !ok || rest == "" {
		return imagePattern{}, fmt.Errorf("%q names no registry: write the full reference, e.g. docker.io/library/%s or ghcr.io/fnndsc/*", p, strings.Trim(p, "/"))
	}
	switch {
	case domain == "index.docker.io":
		return imagePattern{}, fmt.Errorf("%q: Docker Hub is written docker.io, as images are compared", p)
	case domain == "docker.io" && !strings.Contains(rest, "/"):
		return imagePattern{}, fmt.Errorf("%q: Docker Hub's official images are docker.io/library/%s", p, rest)
	case domain != "localhost" && !strings.ContainsAny(domain, ".:*?["):
		return imagePattern{}, fmt.Errorf("%q starts with %q, which is not a registry (Docker reads it as docker.io/%s/...): write docker.io/%s", p, domain, domain, p)
	case strings.ToLower(rest) != rest:
		return imagePattern{}, fmt.Errorf("%q: repository names are lowercase", p)
	}
	return imagePattern{glob: p, withTag: withTag}, nil
}

// allows reports whether the allowlist lets a job run the image whose
// normalised reference is ref.
func (l imageAllowlist) allows(ref reference.Named) bool {
	for _, p := range l {
		target := ref.Name()
		if p.withTag {
			target = ref.String()
		}
		if ok, _ := path.Match(p.glob, target); ok {
			return true
		}
	}
	return false
}

// checkImage returns the image a job runs, and "" when it may run it, else
// why not (for a 400 on the image field). Without an allowlist, every image
// runs as it was sent.
//
// With an allowlist, the image is checked in its normalised form
// (fnndsc/pl-x is docker.io/fnndsc/pl-x:latest, index.docker.io is
// docker.io), and that form is what the scheduler then gets: so no other
// spelling of an image gets past, and no runtime can resolve the name
// differently from the check (Podman, CRI-O and apptainer may search
// short names in registries of their own configuration; an engine also
// takes an image ID, or a prefix of one, for a name it does not hold).
func checkImage(allow imageAllowlist, image string) (string, string) {
	if allow == nil {
		return image, ""
	}
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return image, fmt.Sprintf("%q is not an image reference that JOB_IMAGE_ALLOWLIST can check: %v", image, err)
	}
	ref = reference.TagNameOnly(ref)
	if !allow.allows(ref) {
		return image, fmt.Sprintf("%q (%s) is not an image JOB_IMAGE_ALLOWLIST allows", image, ref)
	}
	return ref.String(), ""
}
