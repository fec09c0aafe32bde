//! A file no reader recognises is reported as such, in words, with its path.

use ztensor_formats::{from_bytes, open};

fn open_err(name: &str, bytes: &[u8]) -> (std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let Err(err) = open(&path) else {
        panic!("{name} must not open");
    };
    let err = err.to_string();
    (path, err)
}

#[test]
fn unknown_content_and_extension_cannot_be_detected() {
    let (path, err) = open_err("notes.txt", b"hello, this is text\n");
    assert_eq!(
        err,
        format!(
            "{}: cannot detect the format: its first bytes and its extension (.txt) match no \
             supported format (.zt, .safetensors, .pt/.pth/.bin/.pkl/.ckpt, .npz, .npy, .gguf, \
             .onnx, .h5/.hdf5)",
            path.display()
        )
    );
    let (_, err) = open_err("README", b"\x7fELF\x02\x01\x01\0 binary");
    assert!(err.contains("cannot detect the format"), "{err}");
    assert!(err.contains("its extension (none)"), "{err}");
    let (_, err) = open_err("empty.txt", b"");
    assert!(
        err.ends_with(": cannot detect the format of an empty file"),
        "{err}"
    );
    let err = from_bytes(b"hello, this is text\n")
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "<bytes>: cannot detect the format: its first bytes are not those of a supported format"
    );
}

#[test]
fn a_known_extension_still_picks_its_reader() {
    // A damaged file named for its format gets that format's diagnosis.
    let (_, err) = open_err("m.zt", b"hello, this is text\n");
    assert!(err.contains("not a .zt file"), "{err}");
    let (_, err) = open_err("m.safetensors", b"hello, this is text\n");
    assert!(!err.contains("cannot detect"), "{err}");
}
