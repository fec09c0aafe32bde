//! A URL to an `object_store` client and the object's path in it.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore};
use ztensor::{Error, Result};

/// Builds the client for `url` (credentials and endpoint from the
/// environment, then `options`) and the object's path.
pub(crate) fn build(
    url: &str,
    options: &[(String, String)],
) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let invalid = |m: String| Error::InvalidArgument(format!("{url}: {m}"));
    let parsed = url::Url::parse(url).map_err(|e| invalid(format!("not a valid URL ({e})")))?;
    let path = Path::from_url_path(parsed.path())
        .map_err(|e| invalid(format!("not a valid object path ({e})")))?;
    if path.as_ref().is_empty() {
        return Err(invalid("the URL names no object".into()));
    }
    let scheme = parsed.scheme().to_ascii_lowercase();
    let unknown = |key: &str| {
        invalid(format!(
            "unknown storage option '{key}' for {scheme}:// URLs"
        ))
    };
    let built = match scheme.as_str() {
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env().with_url(url);
            for (k, v) in options {
                b = b.with_config(k.to_ascii_lowercase().parse().map_err(|_| unknown(k))?, v);
            }
            b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(url);
            for (k, v) in options {
                b = b.with_config(k.to_ascii_lowercase().parse().map_err(|_| unknown(k))?, v);
            }
            b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        "az" | "abfs" | "abfss" => {
            let mut b = MicrosoftAzureBuilder::from_env().with_url(url);
            for (k, v) in options {
                b = b.with_config(k.to_ascii_lowercase().parse().map_err(|_| unknown(k))?, v);
            }
            b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        "http" | "https" => {
            let base = &parsed[..url::Position::BeforePath];
            let mut b = HttpBuilder::new().with_url(base);
            // A plain-HTTP URL asks for plain HTTP.
            if scheme == "http" {
                b = b.with_config(ClientConfigKey::AllowHttp, "true");
            }
            for (k, v) in options {
                let key: ClientConfigKey =
                    k.to_ascii_lowercase().parse().map_err(|_| unknown(k))?;
                b = b.with_config(key, v);
            }
            b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        other => return Err(invalid(format!("unsupported URL scheme '{other}'"))),
    };
    let store = built.map_err(|e| invalid(format!("cannot configure the store: {e}")))?;
    Ok((store, path))
}
