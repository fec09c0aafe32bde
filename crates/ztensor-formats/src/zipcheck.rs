//! Checks of zip members that the `zip` crate leaves to its caller, shared
//! by the `.npz` and torch checkpoint readers.

/// Upper bound of DEFLATE's expansion: one 258-byte match costs at least
/// 2 bits, so `n` compressed bytes inflate to at most ~1032 `n`. Bounds what
/// a deflated `.npz` member or torch pickle may claim to decode to.
pub(crate) const MAX_DEFLATE_RATIO: u64 = 1032;

/// The signature a zip local file header starts with.
const LOCAL_SIGNATURE: &[u8; 4] = b"PK\x03\x04";

/// Checks that the local header at `header_start` is one and names the
/// member as the central directory does (`cd_name`), as Python's `zipfile`
/// (hence `np.load`) does. The name is stored twice; when one copy is
/// damaged, the member would otherwise be read under a name nothing wrote,
/// or in place of another member of that name.
pub(crate) fn check_local_header(
    bytes: &[u8],
    header_start: u64,
    cd_name: &[u8],
) -> Result<(), String> {
    let at = usize::try_from(header_start).unwrap_or(usize::MAX);
    let field = |from: usize, len: usize| {
        bytes
            .get(at.saturating_add(from)..at.saturating_add(from).saturating_add(len))
            .ok_or_else(|| format!("its local header at offset {at} runs past the end of the file"))
    };
    if field(0, 4)? != LOCAL_SIGNATURE {
        return Err(format!("no local header at offset {at}"));
    }
    let name_len = u16::from_le_bytes(field(26, 2)?.try_into().expect("2 bytes"));
    let local = field(30, usize::from(name_len))?;
    if local != cd_name {
        return Err(format!(
            "the central directory names it {:?} but its local header {:?}",
            String::from_utf8_lossy(cd_name),
            String::from_utf8_lossy(local)
        ));
    }
    Ok(())
}

/// The CRC-32 that the last `tail_len` bytes of a zip member must have for
/// the whole member, which starts with `head`, to have the CRC-32 `whole`.
///
/// CRC-32 is linear: `crc(a ‖ b) = shift(crc(a), |b|) ⊕ crc(b)`, where
/// `shift` is what `crc32_combine` applies to its first argument, so the
/// tail's checksum follows from the whole's and the head's. This lets a
/// reader hand out the tail (the array) zero-copy and still check it.
#[cfg(feature = "npz")] // only .npz members are handed out as a tail
pub(crate) fn crc32_of_tail(whole: u32, head: &[u8], tail_len: u64) -> u32 {
    let mut shifted = crc32fast::Hasher::new_with_initial_len(crc32fast::hash(head), 0);
    shifted.combine(&crc32fast::Hasher::new_with_initial_len(0, tail_len));
    whole ^ shifted.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_crc_follows_from_whole_and_head() {
        let member: Vec<u8> = (0..300u32).map(|i| (i * 7 + 1) as u8).collect();
        for split in [0, 1, 10, 128, 299, 300] {
            let (head, tail) = member.split_at(split);
            assert_eq!(
                crc32_of_tail(crc32fast::hash(&member), head, tail.len() as u64),
                crc32fast::hash(tail),
                "split at {split}"
            );
        }
    }

    #[test]
    fn local_header_name_must_match() {
        let mut zip = b"PK\x03\x04".to_vec();
        zip.extend([0u8; 22]);
        zip.extend(5u16.to_le_bytes());
        zip.extend(0u16.to_le_bytes());
        zip.extend(b"a.npy");
        assert!(check_local_header(&zip, 0, b"a.npy").is_ok());
        let err = check_local_header(&zip, 0, b"b.npy").unwrap_err();
        assert!(
            err.contains("\"b.npy\"") && err.contains("\"a.npy\""),
            "{err}"
        );
        assert!(check_local_header(&zip, 1, b"a.npy").is_err());
        assert!(check_local_header(&zip[..32], 0, b"a.npy").is_err());
        assert!(check_local_header(&zip, u64::MAX, b"a.npy").is_err());
    }
}
