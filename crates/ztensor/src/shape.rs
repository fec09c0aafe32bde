//! Shape arithmetic shared by the `.zt` reader and writer and every foreign
//! format, so that a hostile shape is refused the same way everywhere.

/// Number of elements of an array of `shape` (1 for the empty shape of a
/// scalar), or `None` if the product overflows `u64`.
pub fn checked_numel(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::checked_numel;

    #[test]
    fn products_and_overflow() {
        assert_eq!(checked_numel(&[]), Some(1));
        assert_eq!(checked_numel(&[2, 3, 4]), Some(24));
        assert_eq!(checked_numel(&[5, 0, 7]), Some(0));
        assert_eq!(checked_numel(&[1 << 32, 1 << 31]), Some(1 << 63));
        assert_eq!(checked_numel(&[1 << 32, 1 << 32]), None);
    }
}
