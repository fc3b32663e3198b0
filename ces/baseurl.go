package ces

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// retailHomePath is the Retail Home sub-namespace: rgbu-common-<customer>-<env>-rh.
var retailHomePath = regexp.MustCompile(`^/?(rgbu-common-[A-Za-z0-9]+-[A-Za-z0-9]+)-rh/?$`)

// BaseURLFromRetailHome derives the CES base URL from a Retail Home URL as the
// CES chapter describes: https://home.retail.<region>.ocs.oracle.com/rgbu-common-<customer>-<env>-rh
// becomes https://home.retail.<region>.ocs.oracle.com:443/rgbu-common-<customer>-<env>,
// plus suffix (such as "-rds") for products that add one.
func BaseURLFromRetailHome(home, suffix string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(home))
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return "", fmt.Errorf("retail_home_url %q: want https://home.retail.<region>.ocs.oracle.com/rgbu-common-<customer>-<env>-rh", home)
	}
	m := retailHomePath.FindStringSubmatch(u.Path)
	if m == nil {
		return "", fmt.Errorf("retail_home_url path %q: want /rgbu-common-<customer>-<env>-rh", u.Path)
	}
	if suffix != "" && !regexp.MustCompile(`^-[A-Za-z0-9]+$`).MatchString(suffix) {
		return "", fmt.Errorf("base_url_suffix %q: want a dash and letters, such as -rds", suffix)
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return "https://" + u.Hostname() + ":" + port + "/" + m[1] + suffix, nil
}
