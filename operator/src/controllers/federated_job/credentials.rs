//! Each job's token and CA, kept in memory once read from (or written to) their hub
//! Secrets: two Secret reads per reconcile of every job were a steady load on the hub
//! (docs/operator-benchmark.md). Keyed by the job's UID, so a job deleted and created
//! again under the same name never gets the old one's.

use super::per_job::PerJob;
use crate::pki::Ca;
use fedsky_clouds::Sensitive;

/// A job's token and CA. Its `Debug` shows neither the token nor the CA's key.
#[derive(Clone, Debug)]
pub struct JobCredentials {
    /// The token participants present.
    pub token: Sensitive,
    /// The CA issuing the aggregator's and the participants' certificates.
    pub ca: Ca,
}

/// Credentials by job UID.
pub type Credentials = PerJob<JobCredentials>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_kept_per_job_uid_until_forgotten() {
        let creds = Credentials::default();
        let ca = Ca::generate("ns/job", 1_700_000_000).expect("ca");
        assert!(creds.get("uid-1").is_none());
        creds.insert(
            "uid-1",
            JobCredentials {
                token: Sensitive::new("t"),
                ca: ca.clone(),
            },
        );
        let got = creds.get("uid-1").expect("kept");
        assert_eq!((got.token.expose(), &got.ca), ("t", &ca));
        let shown = format!("{got:?}");
        assert!(
            !shown.contains("\"t\"") && shown.contains("redacted"),
            "{shown}"
        );
        assert!(
            creds.get("uid-2").is_none(),
            "another job (same name, new UID)"
        );
        creds.forget("uid-1");
        assert!(creds.get("uid-1").is_none());
    }
}
