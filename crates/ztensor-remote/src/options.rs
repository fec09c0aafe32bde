//! What the caller can tune: the store's own configuration keys, and how
//! tensors are fetched (request size, concurrency, merge gap).

use ztensor::{Error, Result};

/// Options of a remote open.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// The store's configuration keys and values, as `object_store` names
    /// them (`aws_endpoint`, `aws_region`, `allow_http`, `timeout`, ...);
    /// they override the environment.
    pub storage: Vec<(String, String)>,
    /// Largest byte range one request fetches (default 8 MiB).
    pub request_size: u64,
    /// Requests in flight at once (default 16).
    pub concurrency: usize,
    /// Ranges less than this far apart are fetched by one request, the bytes
    /// between them discarded (default 1 MiB).
    pub merge_gap: u64,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            storage: Vec::new(),
            request_size: 8 << 20,
            concurrency: 16,
            merge_gap: 1 << 20,
        }
    }
}

impl RemoteOptions {
    /// Options from `key, value` pairs (Python's `storage_options`):
    /// `request_size`, `concurrency` and `merge_gap` are ztensor's own, every
    /// other key is the store's (checked when the store is built).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut options = RemoteOptions::default();
        for (key, value) in pairs {
            let number = || {
                value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "storage option '{key}' must be a positive integer, not {value:?}"
                        ))
                    })
            };
            match key.as_str() {
                "request_size" => options.request_size = number()?,
                "concurrency" => options.concurrency = number()?.min(1024) as usize,
                "merge_gap" => {
                    options.merge_gap = value.trim().parse::<u64>().map_err(|_| {
                        Error::InvalidArgument(format!(
                        "storage option 'merge_gap' must be a non-negative integer, not {value:?}"
                    ))
                    })?
                }
                _ => options.storage.push((key, value)),
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::RemoteOptions;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn own_keys_are_taken_and_checked() {
        let o = RemoteOptions::from_pairs(pairs(&[
            ("concurrency", "4"),
            ("request_size", "1048576"),
            ("merge_gap", "0"),
            ("aws_region", "eu-west-1"),
        ]))
        .unwrap();
        assert_eq!(
            (o.concurrency, o.request_size, o.merge_gap),
            (4, 1 << 20, 0)
        );
        assert_eq!(o.storage, pairs(&[("aws_region", "eu-west-1")]));
        for bad in [
            ("concurrency", "0"),
            ("request_size", "x"),
            ("merge_gap", "-1"),
        ] {
            let e = RemoteOptions::from_pairs(pairs(&[bad])).unwrap_err();
            assert!(e.to_string().contains(bad.0), "{e}");
        }
    }
}
