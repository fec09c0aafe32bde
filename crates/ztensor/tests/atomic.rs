//! Saving never leaves a torn file at the target.

use ztensor::{Reader, Writer};

fn dir_entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn dropped_writer_publishes_nothing_and_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    let mut w = Writer::create(&path).unwrap();
    w.add("a", &[4], &[1u32, 2, 3, 4]).unwrap();
    assert_eq!(
        dir_entries(dir.path()).len(),
        1,
        "a temporary exists while writing"
    );
    assert!(!path.exists());
    drop(w);
    assert!(dir_entries(dir.path()).is_empty());
}

#[test]
fn existing_file_is_replaced_only_on_finish_and_mapped_readers_stay_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    let mut w = Writer::create(&path).unwrap();
    w.add("a", &[2], &[1.0f64, 2.0]).unwrap();
    w.finish().unwrap();
    let old = std::fs::read(&path).unwrap();
    let reader = Reader::open(&path).unwrap();
    let view: &[f64] = reader.view("a").unwrap();

    let mut w = Writer::create(&path).unwrap();
    w.add("a", &[2], &[9.0f64, 9.0]).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), old, "unchanged until finish");
    drop(w);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        old,
        "unchanged after an abandoned write"
    );

    let mut w = Writer::create(&path).unwrap().durable(true);
    w.add("a", &[2], &[9.0f64, 9.0]).unwrap();
    let size = w.finish().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    assert_eq!(
        Reader::open(&path).unwrap().to_vec::<f64>("a").unwrap(),
        vec![9.0, 9.0]
    );
    assert_eq!(view, &[1.0, 2.0], "the old mapping still sees the old file");
    assert_eq!(dir_entries(dir.path()), vec!["m.zt".to_string()]);
}

#[test]
fn missing_directory_is_an_io_error_naming_the_folder_not_the_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nodir").join("x.zt");
    let err = Writer::create(&path).err().unwrap();
    let ztensor::Error::Io { path: at, source } = &err else {
        panic!("not an I/O error: {err}");
    };
    assert_eq!(at, &path);
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    let text = err.to_string();
    let folder = dir.path().join("nodir");
    assert_eq!(
        text,
        format!(
            "{}: the folder {} does not exist",
            path.display(),
            folder.display()
        )
    );
}

#[test]
fn file_as_directory_names_the_folder_not_the_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"").unwrap();
    // A regular file where a folder is expected: ENOTDIR from the kernel.
    let err = Writer::create(file.join("x.zt")).err().unwrap();
    let text = err.to_string();
    assert!(!text.contains(".x.zt."), "names the temporary: {text}");
    assert!(
        text.contains(&format!("{} is not a folder", file.display())),
        "{text}"
    );
}

#[test]
fn reserved_space_is_trimmed_on_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.zt");
    let mut w = Writer::create(&path).unwrap();
    w.reserve(8 << 20);
    w.add("a", &[3], &[1u16, 2, 3]).unwrap();
    let size = w.finish().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    assert_eq!(
        Reader::open(&path).unwrap().to_vec::<u16>("a").unwrap(),
        vec![1, 2, 3]
    );
}

#[test]
fn temporaries_of_killed_writers_are_cleaned_but_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    // A temporary left by a killed writer: nobody holds its lock.
    let stale = dir.path().join(".m.zt.KILLED.tmp");
    std::fs::write(&stale, b"half a file").unwrap();
    // A writer still at work on the same target.
    let mut live = Writer::create(&path).unwrap();
    live.add("a", &[1], &[1u8]).unwrap();
    assert!(!stale.exists(), "stale temporary removed");
    let mut other = Writer::create(&path).unwrap();
    other.add("b", &[1], &[2u8]).unwrap();
    other.finish().unwrap();
    live.finish().unwrap();
    assert_eq!(dir_entries(dir.path()), vec!["m.zt".to_string()]);
}
