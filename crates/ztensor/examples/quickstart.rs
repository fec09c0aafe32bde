//! Writes a small checkpoint, reads it back zero-copy, and checks it.
//!
//! Run with `cargo run -p ztensor --example quickstart`.

use half::bf16;
use ztensor::{Checksum, Reader, WriteOptions, Writer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("quickstart.zt");

    // Write: one call per tensor, streamed to disk; published atomically by finish().
    let embed: Vec<bf16> = (0..4096).map(|i| bf16::from_f32(i as f32 / 64.0)).collect();
    let bias = vec![0.25f32; 64];
    let ids: Vec<i64> = (0..1000).collect();
    let mut w = Writer::create(&path)?;
    w.add("embed.weight", &[64, 64], &embed)?;
    w.add_with(
        "head.bias",
        &[64],
        &bias,
        &WriteOptions::raw().with_checksum(Checksum::Crc32c),
    )?;
    w.add_with(
        "ids",
        &[1000],
        &ids,
        &WriteOptions::zstd(3).with_checksum(Checksum::Sha256),
    )?;
    let size = w.finish()?;
    println!("wrote {} ({size} bytes)", path.display());

    // Read: list, then zero-copy typed views and decompressed copies.
    let r = Reader::open(&path)?;
    for t in r.tensors() {
        let (cname, c) = t.primary().expect("every tensor here has data");
        println!(
            "  {:<14} {:<8} {:?} {cname}: {} stored bytes, {}, digest {}",
            t.name,
            t.dtype().map_or("?", |d| d.name()),
            t.shape,
            c.length,
            c.encoding.as_str(),
            c.digest
                .as_ref()
                .map_or("none".to_string(), |d| d.to_string()),
        );
    }
    let embed_back: &[bf16] = r.view("embed.weight")?;
    let ids_back: Vec<i64> = r.to_vec("ids")?;
    assert_eq!(embed_back, &embed[..]);
    assert_eq!(ids_back, ids);
    println!(
        "read back bit-exactly; verify(): {} problem(s)",
        r.verify().len()
    );
    Ok(())
}
