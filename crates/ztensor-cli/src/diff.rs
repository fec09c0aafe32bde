//! `zt diff`: tensors only in A, only in B, and those that differ.

use std::io::Write;

use ztensor::{storage_elements_per_item, ReadMode, Reader, TensorInfo};

use crate::args::{DequantizeArg, DiffArgs};
use crate::sharded::Tensors;
use crate::util::{self, outln, Failure};
use crate::{exit, Interrupt};

pub(crate) fn run(args: &DiffArgs, interrupt: &Interrupt) -> Result<i32, Failure> {
    // Trouble reading either file is status 2, as for diff(1).
    let options = DequantizeArg::options(args.dequantize);
    let open = |p| {
        Tensors::open(p, ReadMode::Eager, &options).map_err(|e| {
            eprintln!("zt: error: {e}");
            Failure::Quiet(exit::USAGE)
        })
    };
    let a = open(&args.a)?;
    let b = open(&args.b)?;
    let mut lines = Vec::new();
    let mut identical = 0usize;
    let (mut ia, mut ib) = (
        a.names().into_iter().peekable(),
        b.names().into_iter().peekable(),
    );
    loop {
        interrupt.check()?;
        let (na, nb) = (ia.peek().copied(), ib.peek().copied());
        match (na, nb) {
            (None, None) => break,
            (Some(x), Some(y)) if x == y => {
                ia.next();
                ib.next();
                match compare(&a, &b, x) {
                    None => identical += 1,
                    Some(line) => lines.push(line),
                }
            }
            (Some(x), y) if y.is_none_or(|y| x < y) => {
                ia.next();
                lines.push(format!("only in A: {x}"));
            }
            (_, Some(y)) => {
                ib.next();
                lines.push(format!("only in B: {y}"));
            }
            (Some(_), None) => unreachable!("handled by the arm above"),
        }
    }
    if !args.quiet {
        let mut out = std::io::stdout().lock();
        outln!(out, "A: {}", util::show(&args.a));
        outln!(out, "B: {}", util::show(&args.b));
        for l in &lines {
            outln!(out, "{l}");
        }
        if lines.is_empty() {
            outln!(
                out,
                "identical: {identical} tensor{}",
                if identical == 1 { "" } else { "s" }
            );
        } else {
            outln!(
                out,
                "{} difference{}, {identical} tensor{} identical",
                lines.len(),
                if lines.len() == 1 { "" } else { "s" },
                if identical == 1 { "" } else { "s" }
            );
        }
        out.flush().map_err(util::stdout_error)?;
    }
    Ok(if lines.is_empty() {
        exit::OK
    } else {
        exit::PROBLEMS
    })
}

/// A description of how tensor `name` differs between the inputs, or `None`.
fn compare(a: &Tensors, b: &Tensors, name: &str) -> Option<String> {
    let (a, b) = match (a.reader_for(name), b.reader_for(name)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return Some(format!("unreadable: {name} ({e})")),
    };
    let (ta, tb) = match (a.info(name), b.info(name)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return Some(format!("unreadable: {name} ({e})")),
    };
    let (la, lb) = (util::type_label(ta), util::type_label(tb));
    if ta.dtype() != tb.dtype() || la != lb {
        return Some(format!("dtype differs: {name} ({la} vs {lb})"));
    }
    if ta.shape != tb.shape {
        return Some(format!(
            "shape differs: {name} ({} vs {})",
            util::shape(&ta.shape),
            util::shape(&tb.shape)
        ));
    }
    if ta.layout != tb.layout {
        return Some(format!(
            "layout differs: {name} ({} vs {})",
            ta.layout, tb.layout
        ));
    }
    let ca: Vec<&String> = ta.components.keys().collect();
    let cb: Vec<&String> = tb.components.keys().collect();
    if ca != cb {
        return Some(format!("components differ: {name} ({ca:?} vs {cb:?})"));
    }
    for cname in ca {
        let read = |r: &Reader| r.read_component(name, cname, false);
        let (xa, xb) = match (read(&a), read(&b)) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(e), _) | (_, Err(e)) => return Some(format!("unreadable: {name} ({e})")),
        };
        if xa.as_slice() != xb.as_slice() {
            return Some(describe_bytes(name, cname, ta, &xa, &xb));
        }
    }
    None
}

fn describe_bytes(name: &str, cname: &str, info: &TensorInfo, x: &[u8], y: &[u8]) -> String {
    let c = &info.components[cname];
    let width = c.dtype.size() * storage_elements_per_item(c.logical_type.as_deref()) as usize;
    let what = if info.layout == ztensor::Layout::Dense {
        String::new()
    } else {
        format!(" in component '{cname}'")
    };
    if x.len() != y.len() || width == 0 {
        return format!(
            "data differs: {name}{what} ({} vs {} bytes)",
            x.len(),
            y.len()
        );
    }
    let n = x.len() / width;
    let mut differing = 0u64;
    let mut first = None;
    for (i, (p, q)) in x.chunks_exact(width).zip(y.chunks_exact(width)).enumerate() {
        if p != q {
            differing += 1;
            first.get_or_insert(i);
        }
    }
    format!(
        "data differs: {name}{what} ({differing} of {n} elements, first at index {})",
        first.unwrap_or(0)
    )
}
