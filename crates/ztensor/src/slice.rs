//! Indexing part of a dense tensor: an index (positions, ranges with steps,
//! one list of positions, an ellipsis) is normalised against the tensor's
//! shape into a [`Selection`], and a selection into the byte runs a read
//! must copy ([`Plan`]). Reading those runs is `slice_read.rs`'s job.

use std::fmt;

/// One element of an index, as in `tensor[0, 2:10:2, ..., [3, 1]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Index {
    /// One position, which drops the dimension; a negative one counts from the end.
    At(i64),
    /// Python's `start:stop:step` (`None` where omitted). As in NumPy,
    /// negative bounds count from the end, bounds past either end are
    /// clamped, and the step may be negative but not zero.
    Range {
        /// First position (default: the start for a positive step, the end otherwise).
        start: Option<i64>,
        /// Position to stop before (default: past the end in the step's direction).
        stop: Option<i64>,
        /// Distance between positions (default 1).
        step: Option<i64>,
    },
    /// Positions along one dimension, in any order and with repeats;
    /// negative ones count from the end. At most one list per index.
    List(Vec<i64>),
    /// Full ranges for every dimension the other elements do not name.
    Ellipsis,
}

impl Index {
    /// `:`, the whole dimension.
    pub const ALL: Index = Index::Range {
        start: None,
        stop: None,
        step: None,
    };

    /// `start..stop` (Python's `start:stop`).
    pub fn range(start: i64, stop: i64) -> Index {
        Index::Range {
            start: Some(start),
            stop: Some(stop),
            step: None,
        }
    }
}

/// Why an index does not fit a tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliceError {
    /// A position past either end of its dimension.
    #[error("index {index} is out of bounds for axis {axis} with size {size}")]
    OutOfRange {
        /// The position as given.
        index: i64,
        /// The dimension it indexes.
        axis: usize,
        /// That dimension's size.
        size: u64,
    },
    /// More elements (other than an ellipsis) than the tensor has dimensions.
    #[error("too many indices: the tensor has {dims} dimension(s) but {given} were indexed")]
    TooManyIndices {
        /// The tensor's number of dimensions.
        dims: usize,
        /// The number of dimensions the index names.
        given: usize,
    },
    /// Two ellipses.
    #[error("an index can only have a single ellipsis ('...')")]
    MultipleEllipsis,
    /// Two lists of positions.
    #[error("an index can only have a single list of positions")]
    MultipleLists,
    /// A range whose step is zero.
    #[error("slice step cannot be zero")]
    ZeroStep,
}

/// What one dimension keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pick {
    /// One position; the dimension is dropped.
    At(u64),
    /// `len` positions from `start`, `step` apart.
    Step { start: u64, step: i64, len: u64 },
    /// Listed positions.
    List(Vec<u64>),
}

impl Pick {
    fn len(&self) -> u64 {
        match self {
            Pick::At(_) => 1,
            Pick::Step { len, .. } => *len,
            Pick::List(v) => v.len() as u64,
        }
    }

    /// The `i`-th position kept (`i < len`).
    fn pos(&self, i: u64) -> u64 {
        match self {
            Pick::At(p) => *p,
            // In range by construction (start + (len - 1) * step lies in the
            // dimension), so the two's complement arithmetic is exact.
            Pick::Step { start, step, .. } => start.wrapping_add(i.wrapping_mul(*step as u64)),
            Pick::List(v) => v[i as usize],
        }
    }

    fn is_full(&self, size: u64) -> bool {
        matches!(self, Pick::Step { start: 0, step: 1, len } if *len == size)
    }
}

/// An index normalised against a tensor's shape: what each dimension keeps,
/// and the order and shape of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    source: Vec<u64>,
    picks: Vec<Pick>,
    /// The kept dimensions (not [`Pick::At`]) in the result's order.
    order: Vec<usize>,
    shape: Vec<u64>,
}

impl Selection {
    /// Normalises `index` for a tensor of `shape`, with PyTorch's rule for a
    /// list: its dimension stays where it is (integers just drop theirs).
    pub fn new(shape: &[u64], index: &[Index]) -> Result<Selection, SliceError> {
        Selection::build(shape, index, false)
    }

    /// As [`Selection::new`], with NumPy's rule for a list combined with
    /// integers: when a range or an ellipsis separates them, the list's
    /// dimension comes first in the result (`a[0, :, [1, 2]]` of a
    /// `(3, 4, 5)` array has shape `(2, 4)`).
    pub fn numpy(shape: &[u64], index: &[Index]) -> Result<Selection, SliceError> {
        Selection::build(shape, index, true)
    }

    /// The shape of the tensor the selection was made for.
    pub fn source_shape(&self) -> &[u64] {
        &self.source
    }

    /// The shape of the result.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// Number of elements in the result (`None` if it overflows `u64`).
    pub fn numel(&self) -> Option<u64> {
        crate::shape::checked_numel(&self.shape)
    }

    fn build(shape: &[u64], index: &[Index], numpy: bool) -> Result<Selection, SliceError> {
        let given = index.iter().filter(|i| **i != Index::Ellipsis).count();
        if index.iter().filter(|i| **i == Index::Ellipsis).count() > 1 {
            return Err(SliceError::MultipleEllipsis);
        }
        if index.iter().filter(|i| matches!(i, Index::List(_))).count() > 1 {
            return Err(SliceError::MultipleLists);
        }
        if given > shape.len() {
            return Err(SliceError::TooManyIndices {
                dims: shape.len(),
                given,
            });
        }
        let mut expanded: Vec<&Index> = Vec::with_capacity(shape.len());
        for i in index {
            if *i == Index::Ellipsis {
                expanded.extend(std::iter::repeat_n(&Index::ALL, shape.len() - given));
            } else {
                expanded.push(i);
            }
        }
        expanded.resize(shape.len(), &Index::ALL);
        let picks = expanded
            .iter()
            .zip(shape)
            .enumerate()
            .map(|(axis, (i, &size))| pick(i, axis, size))
            .collect::<Result<Vec<_>, _>>()?;
        let mut order: Vec<usize> = (0..picks.len())
            .filter(|&d| !matches!(picks[d], Pick::At(_)))
            .collect();
        if numpy && list_goes_first(index) {
            let list = order
                .iter()
                .position(|&d| matches!(picks[d], Pick::List(_)))
                .expect("list_goes_first saw a list");
            let d = order.remove(list);
            order.insert(0, d);
        }
        let shape_out = order.iter().map(|&d| picks[d].len()).collect();
        Ok(Selection {
            source: shape.to_vec(),
            picks,
            order,
            shape: shape_out,
        })
    }
}

impl fmt::Display for Selection {
    /// The selection in Python's notation, e.g. `[0, 2:10:2, [3, 1]]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (d, p) in self.picks.iter().enumerate() {
            if d > 0 {
                f.write_str(", ")?;
            }
            match p {
                Pick::At(p) => write!(f, "{p}")?,
                Pick::Step { start, step, len } => write!(f, "{start}+{step}*{len}")?,
                Pick::List(v) => write!(f, "{v:?}")?,
            }
        }
        f.write_str("]")
    }
}

/// NumPy moves the list's dimension to the front when integers (which it
/// also counts as advanced indices) and the list are not all adjacent in
/// the index as written (an ellipsis, even an empty one, separates them).
fn list_goes_first(index: &[Index]) -> bool {
    let advanced: Vec<usize> = index
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i, Index::At(_) | Index::List(_)))
        .map(|(p, _)| p)
        .collect();
    let has_list = index.iter().any(|i| matches!(i, Index::List(_)));
    match (advanced.first(), advanced.last()) {
        (Some(&first), Some(&last)) if has_list => last - first + 1 != advanced.len(),
        _ => false,
    }
}

fn position(i: i64, axis: usize, size: u64) -> Result<u64, SliceError> {
    let p = if i < 0 {
        i as i128 + size as i128
    } else {
        i as i128
    };
    if p < 0 || p >= size as i128 {
        return Err(SliceError::OutOfRange {
            index: i,
            axis,
            size,
        });
    }
    Ok(p as u64)
}

fn pick(i: &Index, axis: usize, size: u64) -> Result<Pick, SliceError> {
    match i {
        Index::At(i) => position(*i, axis, size).map(Pick::At),
        Index::List(v) => v
            .iter()
            .map(|&i| position(i, axis, size))
            .collect::<Result<_, _>>()
            .map(Pick::List),
        Index::Range { start, stop, step } => range(*start, *stop, step.unwrap_or(1), size),
        Index::Ellipsis => unreachable!("expanded by the caller"),
    }
}

/// Python's `slice.indices` followed by the length of the range.
fn range(start: Option<i64>, stop: Option<i64>, step: i64, size: u64) -> Result<Pick, SliceError> {
    if step == 0 {
        return Err(SliceError::ZeroStep);
    }
    let n = size as i128;
    let (lower, upper) = if step > 0 { (0, n) } else { (-1, n - 1) };
    let clamp = |b: Option<i64>, default: i128| match b {
        None => default,
        Some(b) if b < 0 => (b as i128 + n).max(lower),
        Some(b) => (b as i128).min(upper),
    };
    let (first, end) = if step > 0 {
        (clamp(start, lower), clamp(stop, upper))
    } else {
        (clamp(start, upper), clamp(stop, lower))
    };
    let s = step as i128;
    let len = if step > 0 && end > first {
        (end - first + s - 1) / s
    } else if step < 0 && first > end {
        (first - end - s - 1) / -s
    } else {
        0
    };
    Ok(Pick::Step {
        start: if len == 0 { 0 } else { first as u64 },
        step,
        len: len as u64,
    })
}

/// The byte runs a selection reads from a row-major tensor whose elements
/// are `width` bytes: `runs` runs of `run` bytes each, written one after
/// another into the result. The innermost dimensions that the selection
/// keeps whole, plus one unit-step range around them, make up each run; the
/// other kept dimensions are walked like an odometer, last fastest.
#[derive(Debug)]
pub(crate) struct Plan<'s> {
    /// Bytes per run.
    pub run: u64,
    /// Number of runs.
    pub runs: u64,
    /// Byte offset common to every run (fixed positions, and where the run's range starts).
    base: u64,
    /// Walked dimensions in result order: what they keep, and their byte stride.
    outer: Vec<(&'s Pick, u64)>,
}

impl<'s> Plan<'s> {
    /// The plan of `sel`, or `None` when the result is empty (or could not
    /// be addressed: more than `u64::MAX` bytes).
    pub fn new(sel: &'s Selection, width: u64) -> Option<Plan<'s>> {
        let out_bytes = sel.numel()?.checked_mul(width)?;
        if out_bytes == 0 {
            return None;
        }
        // Every dimension is non-empty, so the strides are at most the
        // tensor's byte size, which the caller has checked fits u64.
        let dims = sel.source.len();
        let mut strides = vec![width; dims];
        for d in (0..dims.saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * sel.source[d + 1];
        }
        let mut run = width;
        let mut base = 0;
        let mut merged = dims;
        while merged > 0 {
            let d = merged - 1;
            let p = &sel.picks[d];
            if p.is_full(sel.source[d]) {
                run *= sel.source[d];
                merged = d;
                continue;
            }
            match p {
                Pick::At(i) => {
                    base += i * strides[d];
                    merged = d;
                }
                Pick::Step {
                    start,
                    step: 1,
                    len,
                } => {
                    base += start * strides[d];
                    run *= len;
                    merged = d;
                }
                _ => {}
            }
            break;
        }
        for (p, stride) in sel.picks.iter().zip(&strides).take(merged) {
            if let Pick::At(i) = p {
                base += i * stride;
            }
        }
        let outer: Vec<(&Pick, u64)> = sel
            .order
            .iter()
            .filter(|&&d| d < merged)
            .map(|&d| (&sel.picks[d], strides[d]))
            .collect();
        let runs = outer.iter().map(|(p, _)| p.len()).product();
        Some(Plan {
            run,
            runs,
            base,
            outer,
        })
    }

    /// Total bytes of the result.
    pub fn len(&self) -> u64 {
        self.run * self.runs
    }

    /// True when the runs' source offsets strictly increase with the run
    /// number: dimensions in their own order, positive steps, lists strictly
    /// increasing. Each byte range of the source then feeds one contiguous
    /// piece of the result.
    pub fn increasing(&self) -> bool {
        let ordered = self.outer.windows(2).all(|w| w[0].1 > w[1].1);
        ordered
            && self.outer.iter().all(|(p, _)| match p {
                Pick::Step { step, .. } => *step > 0,
                Pick::List(v) => v.windows(2).all(|w| w[0] < w[1]),
                Pick::At(_) => true,
            })
    }

    /// For an [`increasing`](Plan::increasing) plan: where in the result the
    /// first selected byte at or after source offset `at` goes.
    pub fn result_offset(&self, at: u64) -> u64 {
        // The first run that ends after `at`, by bisection over run numbers.
        let (mut lo, mut hi) = (0, self.runs);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.offset_of(mid) + self.run > at {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        if lo == self.runs {
            return self.len();
        }
        lo * self.run + at.saturating_sub(self.offset_of(lo))
    }

    /// The source byte offset of run `r`.
    pub fn offset_of(&self, mut r: u64) -> u64 {
        let mut off = self.base;
        for (p, stride) in self.outer.iter().rev() {
            off += p.pos(r % p.len()) * stride;
            r /= p.len();
        }
        off
    }

    /// When the innermost walked dimension is a range: the byte distance
    /// from one run to the next along it, and its length.
    pub fn inner_step(&self) -> Option<(u64, u64)> {
        match self.outer.last() {
            Some((Pick::Step { step, len, .. }, stride)) => {
                Some(((*step as u64).wrapping_mul(*stride), *len))
            }
            _ => None,
        }
    }

    /// The source byte offsets of runs `first..`, in order.
    pub fn offsets_from(&self, first: u64) -> Offsets<'_, 's> {
        let mut digits = vec![0; self.outer.len()];
        let mut rest = first;
        for (k, (p, _)) in self.outer.iter().enumerate().rev() {
            digits[k] = rest % p.len();
            rest /= p.len();
        }
        let offset = self.base
            + self
                .outer
                .iter()
                .zip(&digits)
                .map(|((p, stride), &i)| p.pos(i) * stride)
                .sum::<u64>();
        Offsets {
            plan: self,
            digits,
            offset,
        }
    }
}

/// Iterator over the source offsets of a plan's runs.
pub(crate) struct Offsets<'p, 's> {
    plan: &'p Plan<'s>,
    digits: Vec<u64>,
    /// The offset of the run `digits` names.
    offset: u64,
}

impl Iterator for Offsets<'_, '_> {
    type Item = u64;

    /// The current run's offset; then advances (callers take at most `runs`).
    /// The offset moves by differences (wrapping arithmetic, exact since
    /// every offset it passes through is in range): no multiplication per
    /// dimension per run, which small runs (single elements) feel.
    fn next(&mut self) -> Option<u64> {
        let current = self.offset;
        for (k, &(p, stride)) in self.plan.outer.iter().enumerate().rev() {
            let i = self.digits[k];
            let back = if i + 1 < p.len() {
                self.digits[k] = i + 1;
                self.offset = self
                    .offset
                    .wrapping_add(p.pos(i + 1).wrapping_sub(p.pos(i)).wrapping_mul(stride));
                return Some(current);
            } else {
                p.pos(i).wrapping_sub(p.pos(0)).wrapping_mul(stride)
            };
            self.digits[k] = 0;
            self.offset = self.offset.wrapping_sub(back);
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Index::*;

    fn r(start: Option<i64>, stop: Option<i64>, step: Option<i64>) -> Index {
        Range { start, stop, step }
    }

    /// Reference: the flat element indices a selection reads, by brute force.
    fn gathered(sel: &Selection, width: u64) -> Vec<u64> {
        let Some(plan) = Plan::new(sel, width) else {
            return vec![];
        };
        let mut out = vec![];
        for off in plan.offsets_from(0).take(plan.runs as usize) {
            out.extend(
                (off..off + plan.run)
                    .step_by(width as usize)
                    .map(|b| b / width),
            );
        }
        out
    }

    #[test]
    fn ranges_follow_python_slice_indices() {
        // (start, stop, step, size) -> positions, as list(range(*slice(...).indices(size)))
        type Case = (Option<i64>, Option<i64>, Option<i64>, u64, &'static [u64]);
        let cases: &[Case] = &[
            (None, None, None, 4, &[0, 1, 2, 3]),
            (Some(-2), None, None, 4, &[2, 3]),
            (Some(1), Some(100), None, 4, &[1, 2, 3]),
            (Some(-100), Some(2), None, 4, &[0, 1]),
            (Some(5), Some(1), None, 4, &[]),
            (None, None, Some(-1), 4, &[3, 2, 1, 0]),
            (Some(-1), Some(-100), Some(-2), 5, &[4, 2, 0]),
            (None, None, Some(3), 7, &[0, 3, 6]),
            (Some(10), None, Some(-3), 7, &[6, 3, 0]),
            (None, Some(-1), None, 0, &[]),
        ];
        for &(start, stop, step, size, want) in cases {
            let sel = Selection::new(&[size], &[r(start, stop, step)]).unwrap();
            assert_eq!(
                gathered(&sel, 1),
                want,
                "{start:?}:{stop:?}:{step:?} of {size}"
            );
            assert_eq!(sel.shape(), &[want.len() as u64]);
        }
    }

    #[test]
    fn contiguous_selections_are_one_run() {
        let shape = [4, 3, 5];
        for index in [
            vec![At(1)],
            vec![Index::range(1, 3)],
            vec![At(2), Index::range(0, 2)],
            vec![At(3), At(1), Index::range(1, 4)],
            vec![Ellipsis],
        ] {
            let sel = Selection::new(&shape, &index).unwrap();
            let plan = Plan::new(&sel, 4).unwrap();
            assert_eq!(plan.runs, 1, "{index:?}");
        }
        // Columns: one run per row.
        let sel = Selection::new(&[6, 8], &[Index::ALL, Index::range(2, 6)]).unwrap();
        let plan = Plan::new(&sel, 2).unwrap();
        assert_eq!((plan.runs, plan.run), (6, 8));
    }

    #[test]
    fn gathers_match_brute_force_row_major_indexing() {
        let shape = [3u64, 4, 5];
        let flat = |i: u64, j: u64, k: u64| i * 20 + j * 5 + k;
        let sel = Selection::new(
            &shape,
            &[At(-1), r(None, None, Some(2)), List(vec![4, 0, 4])],
        )
        .unwrap();
        let want: Vec<u64> = [0, 2]
            .iter()
            .flat_map(|&j| [4, 0, 4].map(|k| flat(2, j, k)))
            .collect();
        assert_eq!(sel.shape(), &[2, 3]);
        assert_eq!(gathered(&sel, 8), want);
        // NumPy puts the list first when a range separates it from an integer.
        let sel = Selection::numpy(&shape, &[At(0), Index::ALL, List(vec![1, 3])]).unwrap();
        assert_eq!(sel.shape(), &[2, 4]);
        let want: Vec<u64> = [1, 3]
            .iter()
            .flat_map(|&k| (0..4).map(move |j| flat(0, j, k)))
            .collect();
        assert_eq!(gathered(&sel, 1), want);
        // ... and PyTorch keeps it in place.
        let sel = Selection::new(&shape, &[At(0), Index::ALL, List(vec![1, 3])]).unwrap();
        assert_eq!(sel.shape(), &[4, 2]);
        // Adjacent integer and list: in place for both.
        let sel = Selection::numpy(&shape, &[Index::ALL, At(0), List(vec![1])]).unwrap();
        assert_eq!(sel.shape(), &[3, 1]);
        let sel = Selection::numpy(&shape, &[Index::ALL, At(0), Ellipsis, List(vec![1])]).unwrap();
        assert_eq!(sel.shape(), &[1, 3]);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let shape = [3u64, 4];
        let err = |i: &[Index]| Selection::new(&shape, i).unwrap_err();
        assert_eq!(
            err(&[At(3)]),
            SliceError::OutOfRange {
                index: 3,
                axis: 0,
                size: 3
            }
        );
        assert_eq!(
            err(&[Index::ALL, At(-5)]).to_string(),
            "index -5 is out of bounds for axis 1 with size 4"
        );
        assert!(matches!(
            err(&[Index::ALL, List(vec![0, 4])]),
            SliceError::OutOfRange { index: 4, .. }
        ));
        assert_eq!(
            err(&[At(0), At(0), At(0)]),
            SliceError::TooManyIndices { dims: 2, given: 3 }
        );
        assert_eq!(err(&[Ellipsis, Ellipsis]), SliceError::MultipleEllipsis);
        assert_eq!(
            err(&[List(vec![0]), List(vec![0])]),
            SliceError::MultipleLists
        );
        assert_eq!(err(&[r(None, None, Some(0))]), SliceError::ZeroStep);
        // A scalar takes only an empty index or an ellipsis.
        assert_eq!(
            Selection::new(&[], &[Ellipsis]).unwrap().shape(),
            &[] as &[u64]
        );
        assert!(Selection::new(&[], &[At(0)]).is_err());
    }

    #[test]
    fn result_offsets_of_increasing_plans() {
        // Columns 2..6 of an 6x8 byte matrix: runs of 4 at 8r+2.
        let sel = Selection::new(&[6, 8], &[Index::ALL, Index::range(2, 6)]).unwrap();
        let plan = Plan::new(&sel, 1).unwrap();
        assert!(plan.increasing());
        for (at, want) in [
            (0, 0),
            (2, 0),
            (3, 1),
            (6, 4),
            (9, 4),
            (10, 4),
            (11, 5),
            (48, 24),
        ] {
            assert_eq!(plan.result_offset(at), want, "source byte {at}");
        }
        let not = |index: &[Index]| {
            !Plan::new(&Selection::numpy(&[6, 8], index).unwrap(), 1)
                .unwrap()
                .increasing()
        };
        assert!(not(&[List(vec![2, 1])]));
        assert!(not(&[List(vec![1, 1])]));
        assert!(not(&[r(None, None, Some(-1))]));
        assert!(!not(&[List(vec![1, 4]), r(None, None, Some(2))]));
        let moved = Selection::numpy(&[3, 4, 5], &[At(0), Index::ALL, List(vec![1, 3])]).unwrap();
        assert!(!Plan::new(&moved, 1).unwrap().increasing());
    }

    #[test]
    fn empty_results_have_no_plan() {
        let sel = Selection::new(&[0, 3], &[Index::ALL, At(1)]).unwrap();
        assert_eq!(sel.shape(), &[0]);
        assert!(Plan::new(&sel, 4).is_none());
        let sel = Selection::new(&[5, 3], &[Index::range(4, 2)]).unwrap();
        assert!(Plan::new(&sel, 4).is_none());
    }
}
