//! Structure checks for sparse layouts, run by the writer before anything
//! is stored (indices must be `u64`, in range and consistent), and the
//! widening of other integer indices to the `u64` the format stores.

use crate::dtype::{storage_elements_per_item, DType};
use crate::model::Layout;
use crate::writer::ComponentData;

/// The index components of a sparse layout.
fn index_names(layout: &Layout) -> &'static [&'static str] {
    match layout {
        Layout::SparseCsr => &["indptr", "indices"],
        Layout::SparseCoo => &["coords"],
        _ => &[],
    }
}

/// Index components given as another integer type (scipy's int32 CSR,
/// ztensor 1.x files, torch's int64), widened to little-endian `u64` bytes:
/// one entry per component, `None` where it stays as given. Negative
/// indices are refused.
pub(crate) fn widen_indices(
    layout: &Layout,
    components: &[(&str, ComponentData<'_>)],
) -> Result<Vec<Option<Vec<u8>>>, String> {
    let mut out = Vec::with_capacity(components.len());
    for (name, c) in components {
        if !index_names(layout).contains(name) || c.dtype == DType::U64 {
            out.push(None);
            continue;
        }
        let signed = match c.dtype {
            DType::U8 | DType::U16 | DType::U32 => false,
            DType::I8 | DType::I16 | DType::I32 | DType::I64 => true,
            _ => return Err(format!("'{name}' must hold integers, not {}", c.dtype)),
        };
        if let Some(t) = c.logical_type {
            return Err(format!("'{name}' must hold plain integers, not {t}"));
        }
        let size = c.dtype.size();
        let mut wide = Vec::with_capacity(c.bytes.len() / size * 8);
        for b in c.bytes.chunks_exact(size) {
            if signed && b[size - 1] & 0x80 != 0 {
                return Err(format!("'{name}' holds a negative index"));
            }
            let mut le = [0u8; 8];
            le[..size].copy_from_slice(b);
            wide.extend_from_slice(&le);
        }
        out.push(Some(wide));
    }
    Ok(out)
}

fn get<'a>(
    components: &'a [(&str, ComponentData<'_>)],
    name: &str,
) -> Result<&'a ComponentData<'a>, String> {
    components
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| c)
        .ok_or_else(|| format!("missing component '{name}'"))
}

/// Little-endian u64 index values of an index component.
fn indices(components: &[(&str, ComponentData<'_>)], name: &str) -> Result<Vec<u64>, String> {
    let c = get(components, name)?;
    if c.dtype != DType::U64 {
        return Err(format!("'{name}' must be uint64, not {}", c.dtype));
    }
    Ok(c.bytes
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8-byte chunk")))
        .collect())
}

fn nnz(components: &[(&str, ComponentData<'_>)]) -> Result<u64, String> {
    let v = get(components, "values")?;
    let per = v.dtype.size() as u64 * storage_elements_per_item(v.logical_type);
    if !(v.bytes.len() as u64).is_multiple_of(per) {
        return Err("values are not a whole number of elements".into());
    }
    Ok(v.bytes.len() as u64 / per)
}

fn only(components: &[(&str, ComponentData<'_>)], names: &[&str]) -> Result<(), String> {
    match components.iter().find(|(n, _)| !names.contains(n)) {
        Some((n, _)) => Err(format!("unexpected component '{n}' (expected {names:?})")),
        None => Ok(()),
    }
}

/// CSR: shape `[rows, cols]`, `indptr` rising from 0 to nnz with rows+1
/// entries, `indices` (nnz entries) below `cols`.
pub(crate) fn check_csr(
    shape: &[u64],
    components: &[(&str, ComponentData<'_>)],
) -> Result<(), String> {
    only(components, &["values", "indices", "indptr"])?;
    let [rows, cols] = shape else {
        return Err(format!(
            "a CSR matrix has 2 dimensions, not {}",
            shape.len()
        ));
    };
    let nnz = nnz(components)?;
    let indptr = indices(components, "indptr")?;
    let idx = indices(components, "indices")?;
    if indptr.len() as u64 != rows.saturating_add(1) {
        return Err(format!(
            "indptr has {} entries, expected rows + 1 = {}",
            indptr.len(),
            *rows as u128 + 1
        ));
    }
    if idx.len() as u64 != nnz {
        return Err(format!(
            "indices has {} entries but there are {nnz} values",
            idx.len()
        ));
    }
    if indptr.first() != Some(&0)
        || indptr.last() != Some(&nnz)
        || indptr.windows(2).any(|w| w[0] > w[1])
    {
        return Err("indptr must rise from 0 to the number of values".into());
    }
    if let Some(i) = idx.iter().find(|&&i| i >= *cols) {
        return Err(format!(
            "column index {i} is out of range for {cols} columns"
        ));
    }
    Ok(())
}

/// COO: `coords` holds ndim x nnz indices, dimension-major, each in range.
pub(crate) fn check_coo(
    shape: &[u64],
    components: &[(&str, ComponentData<'_>)],
) -> Result<(), String> {
    only(components, &["values", "coords"])?;
    let nnz = nnz(components)?;
    let coords = indices(components, "coords")?;
    if Some(coords.len() as u64) != nnz.checked_mul(shape.len() as u64) {
        return Err(format!(
            "coords has {} entries, expected ndim x nnz = {} x {nnz}",
            coords.len(),
            shape.len()
        ));
    }
    for (d, &extent) in shape.iter().enumerate() {
        let row = &coords[d * nnz as usize..(d + 1) * nnz as usize];
        if let Some(i) = row.iter().find(|&&i| i >= extent) {
            return Err(format!(
                "coordinate {i} is out of range for dimension {d} of size {extent}"
            ));
        }
    }
    Ok(())
}
