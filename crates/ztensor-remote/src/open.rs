//! Opening a remote file: fetch the bytes that describe its tensors (the
//! footer and manifest of a `.zt`, the header of a `.safetensors`), parse
//! them in place in a sparse image of the file, and hand the reader a
//! [`RemoteSource`] for the tensors' bytes.

use std::io;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{GetRange, GetResult, ObjectStore};
use ztensor::{AlignedBuf, Catalog, Error, FormatError, RangeSource, Reader, Result};
use ztensor_formats::{Format, OpenOptions, ParseContext};

use crate::options::RemoteOptions;
use crate::source::{get, not_partial, to_io, Identity, MemorySource, RemoteSource};
use crate::{runtime, store};

/// Bytes asked for first: the end of a `.zt` (its manifest is usually
/// smaller) or the start of a `.safetensors` (its header, likewise).
const FIRST: u64 = 256 << 10;
/// Largest safetensors header accepted (the `safetensors` crate's limit).
const MAX_HEADER: u64 = 100_000_000;

/// Opens the `.zt` or `.safetensors` file at `url` (`s3://`, `gs://`,
/// `az://`, `abfs://`, `http://`, `https://`), reading only its manifest or
/// header; tensors are fetched when read. Other formats are refused with a
/// message saying so (download them first). A missing object is an
/// [`Error::Io`] of kind `NotFound`; a server that ignores `Range` gets the
/// whole object downloaded into memory once.
pub fn open(url: &str, options: &RemoteOptions) -> Result<Reader> {
    open_sized(url, options).map(|(reader, _)| reader)
}

/// [`open`], also giving the object's size in bytes.
pub fn open_sized(url: &str, options: &RemoteOptions) -> Result<(Reader, u64)> {
    let (store, path) = store::build(url, &options.storage)?;
    let rt = runtime::get().map_err(|e| io_error(url, e))?;
    let opened = rt.block_on(
        Opening {
            url,
            store: &*store,
            path: &path,
        }
        .run(),
    );
    let (catalog, source, size): (Catalog, Arc<dyn RangeSource>, u64) = match opened? {
        Opened::Ranged(catalog, identity) => {
            let size = identity.size;
            let source = RemoteSource::new(url, options, store.clone(), path, identity);
            (catalog, Arc::new(source), size)
        }
        Opened::Whole(catalog, buf) => {
            let size = buf.len() as u64;
            (catalog, Arc::new(MemorySource(buf)), size)
        }
    };
    Ok((Reader::from_range_source(url, source, catalog), size))
}

/// An I/O error of the object at `url` (a [`FormatError`] inside stays one).
pub(crate) fn io_error(url: &str, e: io::Error) -> Error {
    match e.get_ref().and_then(|x| x.downcast_ref::<FormatError>()) {
        Some(problem) => Error::format(url, problem.clone()),
        None => Error::Io {
            path: PathBuf::from(url),
            source: e,
        },
    }
}

enum Opened {
    /// Parsed from fetched ranges; tensors are fetched on demand.
    Ranged(Catalog, Identity),
    /// The server ignored `Range`: the whole object, fetched once.
    Whole(Catalog, AlignedBuf),
}

struct Opening<'a> {
    url: &'a str,
    store: &'a dyn ObjectStore,
    path: &'a Path,
}

/// Bytes of the file fetched so far, at their offsets.
struct Image {
    size: u64,
    parts: Vec<(u64, Vec<u8>)>,
}

impl Opening<'_> {
    async fn run(self) -> Result<Opened> {
        let ext = FsPath::new(self.path.as_ref())
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let first = if ext.as_deref() == Some("zt") {
            GetRange::Suffix(FIRST)
        } else {
            GetRange::Bounded(0..FIRST)
        };
        let res = match get(self.store, self.path, first, None).await {
            Err(e) if not_partial(&e) => return self.whole().await,
            r => r.map_err(|e| self.io(to_io(e)))?,
        };
        let identity = Identity::of(&res.meta);
        let start = res.range.start;
        let bytes = self.body(res).await?;
        let mut image = Image {
            size: identity.size,
            parts: vec![(start, bytes)],
        };
        let head = self.bytes(&mut image, &identity, 0, 16).await?;
        let format = match ztensor_formats::detect(&head, None) {
            Some(f @ (Format::Zt | Format::Safetensors)) => f,
            other => return Err(self.unsupported(other)),
        };
        if format == Format::Zt {
            self.zt_manifest(&mut image, &identity).await?;
        } else {
            let n = u64::from_le_bytes(head[..8].try_into().expect("16 bytes"));
            if n > MAX_HEADER {
                return Err(Error::format(
                    self.url,
                    FormatError::limit(format!(
                        "safetensors header of {n} bytes exceeds the 100 MB limit"
                    )),
                ));
            }
            self.bytes(&mut image, &identity, 8, n).await?;
        }
        let catalog = self.parse(format, &image)?;
        Ok(Opened::Ranged(catalog, identity))
    }

    /// Fetches the `.zt` manifest's bytes that the first request missed.
    async fn zt_manifest(&self, image: &mut Image, id: &Identity) -> Result<()> {
        let size = image.size;
        if size < 24 {
            return Ok(()); // the parser says what is wrong
        }
        let tail = self.bytes(image, id, size - 16, 16).await?;
        let (len, overhead) = if &tail[8..] == ztensor::MAGIC {
            (
                u64::from_le_bytes(tail[..8].try_into().expect("8 bytes")),
                16,
            )
        } else {
            (
                u64::from_le_bytes(tail[8..].try_into().expect("8 bytes")),
                8,
            ) // legacy
        };
        if len > ztensor::MAX_MANIFEST || len > size - overhead {
            return Ok(()); // the parser refuses it with its message
        }
        self.bytes(image, id, size - overhead - len, len).await?;
        Ok(())
    }

    /// The file bytes `at..at + len` (clamped to the file), fetched unless
    /// the image holds them.
    async fn bytes(&self, image: &mut Image, id: &Identity, at: u64, len: u64) -> Result<Vec<u8>> {
        let end = (at + len).min(image.size);
        let at = at.min(end);
        for (start, bytes) in &image.parts {
            if *start <= at && end <= start + bytes.len() as u64 {
                return Ok(bytes[(at - start) as usize..(end - start) as usize].to_vec());
            }
        }
        let res = get(self.store, self.path, GetRange::Bounded(at..end), Some(id))
            .await
            .map_err(|e| self.io(to_io(e)))?;
        id.check(&res.meta).map_err(|e| self.io(e))?;
        let bytes = self.body(res).await?;
        if bytes.len() as u64 != end - at {
            return Err(self.io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "asked for {} bytes, the server sent {}",
                    end - at,
                    bytes.len()
                ),
            )));
        }
        image.parts.push((at, bytes.clone()));
        Ok(bytes)
    }

    /// A response's whole body; as many bytes as its range says, or an error.
    async fn body(&self, res: GetResult) -> Result<Vec<u8>> {
        let want = res.range.end - res.range.start;
        let mut out = Vec::with_capacity(want as usize);
        let mut body = res.into_stream();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.map_err(|e| self.io(to_io(e)))?);
            if out.len() as u64 > want {
                break;
            }
        }
        if out.len() as u64 != want {
            return Err(self.io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the server sent {} bytes of a {want}-byte range", out.len()),
            )));
        }
        Ok(out)
    }

    /// The server ignores `Range`: fetch the whole object once, any format.
    async fn whole(&self) -> Result<Opened> {
        let res = self
            .store
            .get_opts(self.path, object_store::GetOptions::new())
            .await
            .map_err(|e| self.io(to_io(e)))?;
        let want = res.meta.size;
        let mut buf =
            AlignedBuf::for_overwrite(want as usize).map_err(|e| Error::format(self.url, e))?;
        let mut at = 0usize;
        let mut body = res.into_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.io(to_io(e)))?;
            let dst = buf
                .as_mut_slice()
                .get_mut(at..at + chunk.len())
                .ok_or_else(|| {
                    self.io(io::Error::other(
                        "the server sent more bytes than the object's size",
                    ))
                })?;
            dst.copy_from_slice(&chunk);
            at += chunk.len();
        }
        if at as u64 != want {
            return Err(self.io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the server sent {at} of the object's {want} bytes"),
            )));
        }
        let format = match ztensor_formats::detect(&buf.as_slice()[..at.min(16)], None) {
            Some(f @ (Format::Zt | Format::Safetensors)) => f,
            other => return Err(self.unsupported(other)),
        };
        let catalog = self.parse_bytes(format, buf.as_slice())?;
        Ok(Opened::Whole(catalog, buf))
    }

    /// Parses the fetched bytes in place: a zero-filled image of the file's
    /// size (reserved, not committed: only the pages written take memory)
    /// holding them at their offsets. The parsers read nothing else.
    fn parse(&self, format: Format, image: &Image) -> Result<Catalog> {
        if image.size == 0 {
            return self.parse_bytes(format, &[]);
        }
        let mut sparse = memmap2::MmapOptions::new()
            .len(image.size as usize)
            .no_reserve_swap()
            .map_anon()
            .map_err(|e| self.io(e))?;
        for (at, bytes) in &image.parts {
            sparse[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
        }
        self.parse_bytes(format, &sparse)
    }

    fn parse_bytes(&self, format: Format, bytes: &[u8]) -> Result<Catalog> {
        let cx = ParseContext::new(Some(FsPath::new(self.url)), &OpenOptions::default());
        format
            .parse(bytes, &cx)
            .map_err(|e| Error::format(self.url, e))
    }

    fn unsupported(&self, format: Option<Format>) -> Error {
        let what = format.map_or("not a .zt or .safetensors file".to_string(), |f| {
            format!("a {} file", f.name())
        });
        Error::format(
            self.url,
            FormatError::unsupported(format!(
                "remote reading supports .zt and .safetensors files; this is {what} (download it first)"
            )),
        )
    }

    fn io(&self, e: io::Error) -> Error {
        io_error(self.url, e)
    }
}
