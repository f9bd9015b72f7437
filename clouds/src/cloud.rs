//! The clouds fedsky knows.

use std::fmt;
use std::str::FromStr;

/// A cloud platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cloud {
    /// Amazon Web Services.
    Aws,
    /// Google Cloud.
    Gcp,
    /// An OpenStack cloud (Keystone v3, Nova, Neutron).
    OpenStack,
}

impl Cloud {
    /// The spelling the fedsky API uses: `aws`, `gcp`, `openstack`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Gcp => "gcp",
            Self::OpenStack => "openstack",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cloud name fedsky does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cloud `{0}`: expected aws, gcp or openstack")]
pub struct UnknownCloud(pub String);

impl FromStr for Cloud {
    type Err = UnknownCloud;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aws" => Ok(Self::Aws),
            "gcp" => Ok(Self::Gcp),
            "openstack" => Ok(Self::OpenStack),
            other => Err(UnknownCloud(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_api_spelling() {
        for c in [Cloud::Aws, Cloud::Gcp, Cloud::OpenStack] {
            assert_eq!(c.as_str().parse::<Cloud>(), Ok(c));
        }
        assert!("azure".parse::<Cloud>().is_err());
    }
}
