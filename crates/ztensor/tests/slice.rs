//! Sliced reads (`Reader::read_slice`): results against indexing the whole
//! tensor by hand, zero-copy where contiguous, zstd frames decoded only
//! where needed, digests never skipped.

use std::path::Path;

use ztensor::{Checksum, Error, Index, ReadMode, Reader, Selection, WriteOptions, Writer};

use Index::{At, Ellipsis, List};

fn step(start: Option<i64>, stop: Option<i64>, step: i64) -> Index {
    Index::Range {
        start,
        stop,
        step: Some(step),
    }
}

/// The test tensor: element i holds a value derived from i.
fn values(n: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| i.wrapping_mul(2654435761) ^ (i >> 7))
        .collect()
}

/// Reference: the elements at the given positions of each dimension
/// (row-major, PyTorch's order: every kept dimension in place).
fn by_hand(all: &[u32], shape: &[u64], positions: &[Vec<u64>]) -> Vec<u32> {
    let mut out = vec![];
    let mut digits = vec![0usize; shape.len()];
    if positions.iter().any(Vec::is_empty) {
        return out;
    }
    loop {
        let flat = digits
            .iter()
            .enumerate()
            .fold(0u64, |acc, (d, &i)| acc * shape[d] + positions[d][i]);
        out.push(all[flat as usize]);
        let mut d = shape.len();
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            digits[d] += 1;
            if digits[d] < positions[d].len() {
                break;
            }
            digits[d] = 0;
        }
    }
}

fn as_u32(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

const SHAPE: [u64; 3] = [600, 40, 24]; // 2.2 MiB of u32: three zstd frames

/// An index, the positions it takes per dimension, and the result's shape.
type Case = (Vec<Index>, Vec<Vec<u64>>, Vec<u64>);

/// Index cases for a tensor of SHAPE.
fn cases() -> Vec<Case> {
    let all = |n: u64| (0..n).collect::<Vec<u64>>();
    vec![
        (vec![At(3)], vec![vec![3], all(40), all(24)], vec![40, 24]),
        (
            vec![At(-1), At(2)],
            vec![vec![599], vec![2], all(24)],
            vec![24],
        ),
        (
            vec![Index::range(100, 400)],
            vec![(100..400).collect(), all(40), all(24)],
            vec![300, 40, 24],
        ),
        (
            vec![Index::ALL, Index::range(5, 15)],
            vec![all(600), (5..15).collect(), all(24)],
            vec![600, 10, 24],
        ),
        (
            vec![Ellipsis, step(Some(-5), Some(1000), 2)],
            vec![all(600), all(40), vec![19, 21, 23]],
            vec![600, 40, 3],
        ),
        (
            vec![step(None, None, -97), Ellipsis, At(0)],
            vec![(0..7).map(|i| 599 - 97 * i).collect(), all(40), vec![0]],
            vec![7, 40],
        ),
        (
            vec![Index::range(590, 599), List(vec![39, 0, -1, 0])],
            vec![(590..599).collect(), vec![39, 0, 39, 0], all(24)],
            vec![9, 4, 24],
        ),
        (
            vec![At(0), Index::ALL, List(vec![1, 3])],
            vec![vec![0], all(40), vec![1, 3]],
            vec![40, 2],
        ),
        (
            vec![Index::range(7, 7)],
            vec![vec![], all(40), all(24)],
            vec![0, 40, 24],
        ),
        (
            vec![Ellipsis],
            vec![all(600), all(40), all(24)],
            vec![600, 40, 24],
        ),
        (
            vec![At(5), At(6), At(7)],
            vec![vec![5], vec![6], vec![7]],
            vec![],
        ),
    ]
}

fn write(path: &Path, opts: &WriteOptions) -> Vec<u32> {
    let data = values(SHAPE.iter().product::<u64>() as usize);
    let mut w = Writer::create(path).unwrap();
    w.add_with("t", &SHAPE, &data, opts).unwrap();
    w.add("scalar", &[], &[7u32]).unwrap();
    w.add("empty", &[0, 5], &[] as &[u32]).unwrap();
    w.finish().unwrap();
    data
}

#[test]
fn slices_equal_indexing_the_whole_tensor_for_every_encoding_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let options = [
        WriteOptions::raw(),
        WriteOptions::raw().with_checksum(Checksum::Crc32c),
        WriteOptions::zstd(3),
        WriteOptions::zstd(3).with_checksum(Checksum::Sha256),
    ];
    for (k, opts) in options.iter().enumerate() {
        let path = dir.path().join(format!("m{k}.zt"));
        let data = write(&path, opts);
        for mode in [ReadMode::Mmap, ReadMode::Eager] {
            let r = Reader::open_with(&path, mode).unwrap();
            for (index, positions, shape) in cases() {
                let got = r.read_slice("t", &index).unwrap();
                assert_eq!(got.shape, shape, "{index:?}");
                assert_eq!(
                    as_u32(&got.bytes),
                    by_hand(&data, &SHAPE, &positions),
                    "{opts:?} {mode:?} {index:?}"
                );
            }
            let s = r.read_slice("scalar", &[]).unwrap();
            assert_eq!((s.shape.clone(), as_u32(&s.bytes)), (vec![], vec![7]));
            let e = r.read_slice("empty", &[Index::ALL, At(4)]).unwrap();
            assert_eq!((e.shape.clone(), e.bytes.len()), (vec![0], 0));
        }
    }
}

#[test]
fn parallel_gathers_of_large_results_are_exact() {
    // 8 MiB of u32 and a 4 MiB result: gathered by several tasks, each
    // starting its odometer mid-way.
    let dir = tempfile::tempdir().unwrap();
    let shape = [2048u64, 1024];
    let data = values(2048 * 1024);
    for (k, opts) in [WriteOptions::raw(), WriteOptions::zstd(1)]
        .iter()
        .enumerate()
    {
        let path = dir.path().join(format!("big{k}.zt"));
        let mut w = Writer::create(&path).unwrap();
        w.add_with("t", &shape, &data, opts).unwrap();
        w.finish().unwrap();
        for mode in [ReadMode::Mmap, ReadMode::Eager] {
            let r = Reader::open_with(&path, mode).unwrap();
            let got = r
                .read_slice("t", &[Index::ALL, Index::range(100, 612)])
                .unwrap();
            let want = by_hand(&data, &shape, &[(0..2048).collect(), (100..612).collect()]);
            assert_eq!(as_u32(&got.bytes), want, "{opts:?} {mode:?}");
            // One element per run: eager reads whole spans instead of a pread each.
            let got = r.read_slice("t", &[step(None, None, 3), At(-2)]).unwrap();
            let rows: Vec<u64> = (0..2048).step_by(3).collect();
            assert_eq!(
                as_u32(&got.bytes),
                by_hand(&data, &shape, &[rows, vec![1022]])
            );
        }
    }
}

#[test]
fn contiguous_raw_slices_are_views_of_the_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    write(&path, &WriteOptions::raw());
    let r = Reader::open(&path).unwrap();
    assert!(r
        .read_slice("t", &[Index::range(10, 20)])
        .unwrap()
        .bytes
        .is_zero_copy());
    assert!(r
        .read_slice("t", &[At(3), At(4)])
        .unwrap()
        .bytes
        .is_zero_copy());
    assert!(!r
        .read_slice("t", &[Index::ALL, At(4)])
        .unwrap()
        .bytes
        .is_zero_copy());
    let sel = Selection::new(&SHAPE, &[At(1)]).unwrap();
    let isolated = r.read_selection_isolated("t", &sel).unwrap();
    let shared = r.read_selection("t", &sel).unwrap();
    assert!(isolated.is_zero_copy());
    assert_ne!(
        isolated.as_ptr(),
        shared.as_ptr(),
        "a fresh mapping of its own"
    );
    assert_eq!(&isolated[..], &shared[..]);
    let eager = Reader::open_with(&path, ReadMode::Eager).unwrap();
    assert!(!eager
        .read_slice("t", &[At(3)])
        .unwrap()
        .bytes
        .is_zero_copy());
    // A file held in memory: views of that memory.
    let memory = Reader::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    let rows = memory.read_slice("t", &[Index::range(1, 3)]).unwrap();
    assert!(rows.bytes.is_zero_copy());
    let mapped = r.read_slice("t", &[Index::range(1, 3)]).unwrap();
    assert_eq!(&rows.bytes[..], &mapped.bytes[..]);
    let isolated = memory.read_selection_isolated("t", &sel).unwrap();
    assert_eq!(&isolated[..], &shared[..]);
}

#[test]
fn zstd_slices_decode_only_the_frames_they_touch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.zt");
    write(&path, &WriteOptions::zstd(3));
    let row = SHAPE[1] * SHAPE[2] * 4; // bytes per row; frames are 1 MiB
    let rows_per_frame = (1 << 20) / row; // 273
    for mode in [ReadMode::Mmap, ReadMode::Eager] {
        let r = Reader::open_with(&path, mode).unwrap();
        r.read_slice("t", &[Index::range(0, 10)]).unwrap();
        assert_eq!(r.frames_decoded(), 1);
        r.read_slice("t", &[At(rows_per_frame as i64)]).unwrap(); // crosses the first boundary
        assert_eq!(r.frames_decoded(), 3);
        r.read_slice("t", &[At(-1), At(0)]).unwrap();
        assert_eq!(r.frames_decoded(), 4);
        r.read_slice("t", &[Index::ALL, At(0)]).unwrap(); // a column touches every frame
        assert_eq!(r.frames_decoded(), 7);
    }
}

#[test]
fn a_corrupt_far_frame_does_not_stop_a_near_slice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.zt");
    // Compressible data, so that the blocks are entropy-coded (raw blocks
    // would take any bytes).
    let data: Vec<u32> = (0..SHAPE.iter().product::<u64>() as u32)
        .map(|i| i / 3 % 5000)
        .collect();
    let mut w = Writer::create(&path).unwrap();
    w.add_with("t", &SHAPE, &data, &WriteOptions::zstd(3))
        .unwrap();
    w.finish().unwrap();
    let c = Reader::open(&path).unwrap().info("t").unwrap().components["data"].clone();
    let mut bytes = std::fs::read(&path).unwrap();
    // Zero 64 bytes of the last frame's last block.
    let at = (c.offset + c.length - 100) as usize;
    bytes[at..at + 64].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let r = Reader::open(&path).unwrap();
    assert!(r.read("t").is_err(), "the whole tensor no longer decodes");
    let got = r.read_slice("t", &[Index::range(0, 200)]).unwrap();
    let positions = [(0..200).collect(), (0..40).collect(), (0..24).collect()];
    assert_eq!(as_u32(&got.bytes), by_hand(&data, &SHAPE, &positions));
    assert!(r.read_slice("t", &[At(-1)]).is_err());
}

#[test]
fn a_flipped_bit_outside_the_slice_fails_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    for (k, opts) in [
        WriteOptions::raw().with_checksum(Checksum::Crc32c),
        WriteOptions::zstd(3).with_checksum(Checksum::Crc32c),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.path().join(format!("c{k}.zt"));
        write(&path, opts);
        let c = Reader::open(&path).unwrap().info("t").unwrap().components["data"].clone();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(c.offset + c.length - 1) as usize] ^= 0x10; // in the last row
        std::fs::write(&path, &bytes).unwrap();
        for mode in [ReadMode::Mmap, ReadMode::Eager] {
            let r = Reader::open_with(&path, mode).unwrap();
            for _ in 0..2 {
                let e = r.read_slice("t", &[At(0)]).unwrap_err();
                assert_eq!(e.kind(), ztensor::ErrorKind::ChecksumMismatch, "{e}");
                let e = e.to_string();
                assert!(e.contains("checksum mismatch") && e.contains("'t'"), "{e}");
            }
        }
    }
}

#[test]
fn the_digest_is_checked_once_per_reader() {
    // Eager reads take the bytes from the file at each call: after the first
    // slice has checked the digest, a bit flipped far away goes unnoticed by
    // later slices of the same reader (they do not re-check), while a new
    // reader still catches it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.zt");
    let data = write(&path, &WriteOptions::raw().with_checksum(Checksum::Crc32c));
    let r = Reader::open_with(&path, ReadMode::Eager).unwrap();
    r.read_slice("t", &[At(1)]).unwrap();
    let c = r.info("t").unwrap().components["data"].clone();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(c.offset + c.length - 1) as usize] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let got = r.read_slice("t", &[At(2)]).unwrap();
    let positions = [vec![2], (0..40).collect(), (0..24).collect()];
    assert_eq!(as_u32(&got.bytes), by_hand(&data, &SHAPE, &positions));
    let fresh = Reader::open_with(&path, ReadMode::Eager).unwrap();
    assert!(fresh.read_slice("t", &[At(2)]).is_err());
}

#[test]
fn bad_indexes_are_invalid_arguments_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    write(&path, &WriteOptions::raw());
    let r = Reader::open(&path).unwrap();
    for (index, text) in [
        (
            vec![At(600)],
            "index 600 is out of bounds for axis 0 with size 600",
        ),
        (
            vec![Index::ALL, List(vec![40])],
            "index 40 is out of bounds for axis 1",
        ),
        (vec![At(0), At(0), At(0), At(0)], "too many indices"),
        (vec![step(None, None, 0)], "step cannot be zero"),
    ] {
        let e = r.read_slice("t", &index).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert!(
            e.to_string().contains(text) && e.to_string().contains("'t'"),
            "{e}"
        );
    }
    let other = Selection::new(&[3], &[At(0)]).unwrap();
    let e = r.read_selection("t", &other).unwrap_err().to_string();
    assert!(e.contains("made for shape [3]"), "{e}");
    assert!(matches!(
        r.read_slice("nope", &[]),
        Err(Error::NotFound { .. })
    ));
}
