//! The byte source of a remote reader: ranged GETs of one object, checked
//! to come from the same version of it that was opened.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResult, ObjectMeta, ObjectStore};
use ztensor::{ErrorKind, FormatError, RangeSource};

use crate::options::RemoteOptions;
use crate::plan::{plan, scatter, Request};
use crate::{runtime, store};

/// Times a request cut short is asked again for its missing bytes.
const RESUMES: u32 = 5;

/// What identifies the version of the object that was opened.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub size: u64,
    e_tag: Option<String>,
    last_modified: chrono::DateTime<chrono::Utc>,
}

impl Identity {
    pub(crate) fn of(meta: &ObjectMeta) -> Identity {
        Identity {
            size: meta.size,
            e_tag: meta.e_tag.clone(),
            last_modified: meta.last_modified,
        }
    }

    /// An error when `meta` describes another version of the object.
    pub(crate) fn check(&self, meta: &ObjectMeta) -> io::Result<()> {
        let same = meta.size == self.size
            && match (&self.e_tag, &meta.e_tag) {
                (Some(a), Some(b)) => a == b,
                (Some(_), None) => false,
                (None, _) => meta.last_modified == self.last_modified,
            };
        if same {
            Ok(())
        } else {
            Err(changed())
        }
    }
}

fn changed() -> io::Error {
    io::Error::other(FormatError::corrupt(
        "the object changed on the server since it was opened (its ETag, date or size differs); open it again",
    ))
}

/// An `object_store` error as an I/O error the reader reports: a missing
/// object is `NotFound`, a failed `If-Match` a changed object.
pub(crate) fn to_io(e: object_store::Error) -> io::Error {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, "no such object"),
        E::Precondition { .. } => changed(),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            io::Error::new(io::ErrorKind::PermissionDenied, e.to_string())
        }
        _ if not_partial(&e) => io::Error::other(FormatError::unsupported(
            "the server ignored a Range request (it answered with the whole object)",
        )),
        _ => io::Error::other(e.to_string()),
    }
}

/// True when the server answered a ranged GET with the whole object (S3
/// and other clients say "non-partial response", the HTTP client "Range
/// request not supported").
pub(crate) fn not_partial(e: &object_store::Error) -> bool {
    let m = e.to_string();
    m.contains("non-partial response") || m.contains("Range request not supported")
}

/// Reads ranges of one object.
pub(crate) struct RemoteSource {
    url: String,
    options: RemoteOptions,
    path: Path,
    /// The client, and the process that made it (a forked child makes its own).
    store: Mutex<(u32, Arc<dyn ObjectStore>)>,
    identity: Identity,
}

impl RemoteSource {
    pub(crate) fn new(
        url: &str,
        options: &RemoteOptions,
        store: Arc<dyn ObjectStore>,
        path: Path,
        identity: Identity,
    ) -> RemoteSource {
        RemoteSource {
            url: url.to_string(),
            options: options.clone(),
            path,
            store: Mutex::new((std::process::id(), store)),
            identity,
        }
    }

    fn store(&self) -> io::Result<Arc<dyn ObjectStore>> {
        let mut slot = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let me = std::process::id();
        if slot.0 != me {
            // The parent's client holds connections driven by the parent's
            // runtime; a child needs its own.
            let (store, _) = store::build(&self.url, &self.options.storage)
                .map_err(|e| io::Error::other(e.to_string()))?;
            *slot = (me, store);
        }
        Ok(slot.1.clone())
    }

    /// Fetches one planned request into its pieces; a body cut short is
    /// asked again for what is missing, from the same object version.
    async fn fetch(&self, store: &dyn ObjectStore, mut req: Request<'_>) -> io::Result<()> {
        let (mut pos, mut next, mut resumes) = (req.start, 0usize, 0u32);
        while pos < req.end {
            let res = get(
                store,
                &self.path,
                GetRange::Bounded(pos..req.end),
                Some(&self.identity),
            )
            .await
            .map_err(to_io)?;
            self.identity.check(&res.meta)?;
            if res.range.start != pos {
                return Err(io::Error::other(format!(
                    "asked for bytes from {pos}, the server sent bytes from {}",
                    res.range.start
                )));
            }
            let mut body = res.into_stream();
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else { break };
                if chunk.len() as u64 > req.end - pos {
                    return Err(io::Error::other(
                        "the server sent more bytes than the range asked for",
                    ));
                }
                scatter(&mut req.pieces, &mut next, pos, &chunk);
                pos += chunk.len() as u64;
            }
            if pos < req.end {
                resumes += 1;
                if resumes > RESUMES {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the server sent bytes {}..{pos} of {}..{}, and then no more after {RESUMES} retries",
                            req.start, req.start, req.end
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50 << resumes)).await;
            }
        }
        Ok(())
    }
}

/// A GET of `range`, conditional on `identity` when given.
pub(crate) async fn get(
    store: &dyn ObjectStore,
    path: &Path,
    range: GetRange,
    identity: Option<&Identity>,
) -> object_store::Result<GetResult> {
    let mut options = GetOptions::new();
    options.range = Some(range);
    if let Some(id) = identity {
        match &id.e_tag {
            Some(tag) => options.if_match = Some(tag.clone()),
            // A server that sent no date leaves it at 0: nothing to condition on.
            None if id.last_modified.timestamp() != 0 => {
                options.if_unmodified_since = Some(id.last_modified)
            }
            None => {}
        }
    }
    store.get_opts(path, options).await
}

impl RangeSource for RemoteSource {
    fn read_into(&self, offset: u64, dst: &mut [u8]) -> io::Result<()> {
        self.read_many(&mut [(offset, dst)])
    }

    fn read_many(&self, ranges: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        if let Some((offset, dst)) = ranges.last() {
            if offset + dst.len() as u64 > self.identity.size {
                return Err(io::Error::other(FormatError::new(
                    ErrorKind::Truncated,
                    "a read runs past the end of the object",
                )));
            }
        }
        let requests = plan(ranges, self.options.request_size, self.options.merge_gap);
        if requests.is_empty() {
            return Ok(());
        }
        let store = self.store()?;
        let rt = runtime::get()?;
        rt.block_on(async {
            futures_util::stream::iter(requests.into_iter().map(|r| self.fetch(&*store, r)))
                .buffer_unordered(self.options.concurrency.max(1))
                .try_for_each(|()| std::future::ready(Ok(())))
                .await
        })
    }
}

/// The whole object in memory: for servers that ignore `Range`.
pub(crate) struct MemorySource(pub ztensor::AlignedBuf);

impl RangeSource for MemorySource {
    fn read_into(&self, offset: u64, dst: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let src = self
            .0
            .as_slice()
            .get(start..start + dst.len())
            .ok_or_else(|| io::Error::other("read past the end of the object"))?;
        dst.copy_from_slice(src);
        Ok(())
    }
}
