package ces

import "testing"

func TestBaseURLFromRetailHome(t *testing.T) {
	tests := []struct {
		home, suffix, want string
		bad                bool
	}{
		{home: "https://home.retail.us-ashburn-1.ocs.oracle.com/rgbu-common-abc123-prod-rh", want: "https://home.retail.us-ashburn-1.ocs.oracle.com:443/rgbu-common-abc123-prod"},
		{home: "https://home.retail.eu-frankfurt-1.ocs.oracle.com/rgbu-common-xyz-stg1-rh/", suffix: "-rds", want: "https://home.retail.eu-frankfurt-1.ocs.oracle.com:443/rgbu-common-xyz-stg1-rds"},
		{home: "https://home.retail.us-ashburn-1.ocs.oracle.com:8443/rgbu-common-abc-prod-rh", want: "https://home.retail.us-ashburn-1.ocs.oracle.com:8443/rgbu-common-abc-prod"},
		{home: "http://home.retail.us-ashburn-1.ocs.oracle.com/rgbu-common-abc-prod-rh", bad: true},
		{home: "https://home.retail.us-ashburn-1.ocs.oracle.com/rgbu-common-abc-prod", bad: true},
		{home: "https://home.retail.us-ashburn-1.ocs.oracle.com/other/rgbu-common-abc-prod-rh", bad: true},
		{home: "https://home.retail.us-ashburn-1.ocs.oracle.com/rgbu-common-abc-prod-rh", suffix: "rds", bad: true},
		{home: "not a url", bad: true},
	}
	for _, tc := range tests {
		got, err := BaseURLFromRetailHome(tc.home, tc.suffix)
		if tc.bad != (err != nil) || got != tc.want {
			t.Errorf("%q %q: got %q, %v", tc.home, tc.suffix, got, err)
		}
	}
}
