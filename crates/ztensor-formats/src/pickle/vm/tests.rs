//! The machine on hand-written pickles, with hooks that interpret nothing.

use std::rc::{Rc, Weak};

use super::memo::MAX_MEMO;
use super::opcodes::Op;
use super::text::decimal_to_le;
use super::*;

/// Hooks that interpret nothing.
struct Inert;

impl Hooks for Inert {
    fn call(
        &mut self,
        callable: &Value,
        args: Vec<Value>,
        _budget: &mut Budget,
    ) -> Result<Value, String> {
        Ok(Value::Object(Rc::new(Object::new(callable.kind(), args))))
    }
    fn persistent_load(&mut self, pid: Value) -> Result<Value, String> {
        Ok(Value::Object(Rc::new(Object::new("pid".into(), vec![pid]))))
    }
}

fn eval(p: &[u8]) -> Result<Value, String> {
    let mut budget = Budget::new(p.len() as u64);
    let result = run(p, &mut Inert, &mut budget).map(|(v, _)| v);
    // The tests inspect the value after the budget is gone: keep its
    // containers as they are (leaking any cycle, in tests only).
    std::mem::forget(std::mem::take(&mut budget.mutated));
    result
}

#[test]
fn opcode_table() {
    // Protocols 0 to 5 define 68 opcodes: each byte names at most one,
    // each name is used once, and every other byte is refused.
    let ops: Vec<Op> = (0..=255u8).filter_map(|b| Op::try_from(b).ok()).collect();
    assert_eq!(ops.len(), 68);
    let names: std::collections::HashSet<&str> = ops.iter().map(|op| op.name()).collect();
    assert_eq!(names.len(), 68);
    for op in ops {
        assert_eq!(Op::try_from(op as u8), Ok(op));
    }
    assert_eq!(Op::try_from(b'c').map(Op::name), Ok("GLOBAL"));
    assert_eq!(Op::try_from(0x93).map(Op::name), Ok("STACK_GLOBAL"));
    assert_eq!(Op::try_from(b'q').map(Op::name), Ok("BINPUT"));
    assert_eq!(Op::try_from(0x99), Err("unknown opcode 0x99".to_string()));
}

#[test]
fn reference_cycles_are_freed_with_the_budget() {
    // l = []; l.append(l); d = {}; d[0] = d; o = obj(); o.__setstate__(o)
    type WeakOf = fn(&Value) -> Option<Weak<dyn std::any::Any>>;
    let cases: [(&[u8], WeakOf); 3] = [
        (b"\x80\x02]q\x00h\x00a.", |v| match v {
            Value::List(l) => Some(Rc::downgrade(l) as Weak<dyn std::any::Any>),
            _ => None,
        }),
        (b"\x80\x02}q\x00K\x00h\x00s.", |v| match v {
            Value::Dict(d) => Some(Rc::downgrade(d) as Weak<dyn std::any::Any>),
            _ => None,
        }),
        (b"\x80\x02cm\nC\n)\x81q\x00h\x00b.", |v| match v {
            Value::Object(o) => Some(Rc::downgrade(o) as Weak<dyn std::any::Any>),
            _ => None,
        }),
    ];
    for (p, weak_of) in cases {
        let mut budget = Budget::new(p.len() as u64);
        let (v, _) = run(p, &mut Inert, &mut budget).unwrap();
        let weak = weak_of(&v).expect("the pickle's container");
        drop(v);
        assert!(weak.upgrade().is_some(), "the cycle keeps it alive");
        drop(budget);
        assert!(weak.upgrade().is_none(), "freed with the budget");
    }
}

#[test]
fn scalars_and_containers() {
    // {'a': [1, -2, 3.5, None, True], 'b': (b'xy', 300)}
    let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00a]q\x01(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00bC\x02xyM,\x01\x86u.";
    let Value::Dict(d) = eval(p).unwrap() else {
        panic!("not a dict")
    };
    let d = d.0.borrow();
    assert_eq!(d.len(), 2);
    let Value::List(l) = &d[0].1 else { panic!() };
    let l = l.0.borrow();
    assert!(matches!(l[0], Value::Int(1)));
    assert!(matches!(l[1], Value::Int(-2)));
    assert!(matches!(l[2], Value::Float(f) if f == 3.5));
    assert!(matches!(l[3], Value::None));
    assert!(matches!(l[4], Value::Bool(true)));
    let Value::Tuple(t) = &d[1].1 else { panic!() };
    let t = t.0.borrow();
    assert!(matches!(t[0], Value::Bytes { len: 2, .. }));
    assert!(matches!(t[1], Value::Int(300)));
}

#[test]
fn protocol_0_text_opcodes() {
    let p = b"(dp0\nS'k'\np1\n(lp2\nI01\naL12345678901234567890L\naF1.5\naVx\\u00e9\nag1\nas.";
    let Value::Dict(d) = eval(p).unwrap() else {
        panic!()
    };
    let d = d.0.borrow();
    assert!(matches!(&d[0].0, Value::Str(s) if &**s == "k"));
    let Value::List(l) = &d[0].1 else { panic!() };
    let l = l.0.borrow();
    assert!(matches!(l[0], Value::Bool(true)));
    assert!(matches!(l[1], Value::BigInt(_)));
    assert!(matches!(l[2], Value::Float(f) if f == 1.5));
    assert!(matches!(&l[3], Value::Str(s) if &**s == "x\u{e9}"));
    assert!(matches!(&l[4], Value::Str(s) if &**s == "k"));
}

#[test]
fn text_longs_match_long1() {
    for (text, bytes) in [
        (
            "119547037146038801333356",
            &b"\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"[..],
        ),
        (
            "-9223372036854775809",
            b"\xff\xff\xff\xff\xff\xff\xff\x7f\xff",
        ),
        (
            "18446744073709551615",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\x00",
        ),
        (
            "-18446744073709551616",
            b"\x00\x00\x00\x00\x00\x00\x00\x00\xff",
        ),
    ] {
        assert_eq!(decimal_to_le(text).unwrap(), bytes, "{text}");
    }
    assert!(decimal_to_le("12a").is_none());
    assert!(decimal_to_le("-").is_none());
}

#[test]
fn long_opcodes() {
    assert!(matches!(eval(b"\x8a\x01\xff.").unwrap(), Value::Int(-1)));
    assert!(matches!(eval(b"\x8a\x00.").unwrap(), Value::Int(0)));
    assert!(matches!(
        eval(b"\x8a\x02\x00\x80.").unwrap(),
        Value::Int(-32768)
    ));
    assert!(matches!(
        eval(b"\x8b\x09\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09.").unwrap(),
        Value::BigInt(b) if b.len() == 9
    ));
    // A LONG4 length past the end of the input is refused before any allocation.
    let e = eval(b"\x8b\xff\xff\xff\x7f").err().unwrap();
    assert!(e.contains("past the end"), "{e}");
    assert!(eval(b"\x8b\xff\xff\xff\xff").is_err());
}

#[test]
fn globals_are_never_resolved() {
    // os.system('echo hi') via GLOBAL + REDUCE yields an inert object.
    let p = b"cos\nsystem\n(S'echo hi'\ntR.";
    let Value::Object(o) = eval(p).unwrap() else {
        panic!()
    };
    assert_eq!(o.class, "os.system");
    // STACK_GLOBAL, NEWOBJ, NEWOBJ_EX, INST, OBJ and BUILD likewise.
    let p = b"\x80\x04\x8c\x02os\x8c\x06system\x93)\x81}b\x8c\x02os\x8c\x05popen\x93)}\x92(cbuiltins\neval\no0(ibuiltins\nexec\n0.";
    let v = eval(p).unwrap();
    assert!(matches!(v, Value::Object(o) if o.class == "os.popen"));
}

#[test]
fn marks_pop_and_dup() {
    // POP with an empty stack pops the mark; POP_MARK discards items.
    let p = b"K\x01(K\x02K\x031(0\x2e";
    assert!(matches!(eval(p).unwrap(), Value::Int(1)));
    let p = b"K\x05\x32\x86.";
    let Value::Tuple(t) = eval(p).unwrap() else {
        panic!()
    };
    assert_eq!(t.0.borrow().len(), 2);
}

#[test]
fn memo_sparse_keys_and_errors() {
    // LONG_BINPUT with a huge key costs one map entry, not a huge vector.
    let p = b"K\x07r\xff\xff\xff\xff0j\xff\xff\xff\xff.";
    assert!(matches!(eval(p).unwrap(), Value::Int(7)));
    let e = eval(b"h\x05.").err().unwrap();
    assert!(e.contains("memo key 5"), "{e}");
    // MEMOIZE numbers entries by the memo's size.
    let p = b"\x80\x04K\x01\x94K\x02\x94h\x01.";
    assert!(matches!(eval(p).unwrap(), Value::Int(2)));
}

#[test]
fn malformed_inputs_fail_cleanly() {
    for p in [
        &b""[..],
        b"\x80",
        b"\x80\x06N.",
        b"N",
        b".",
        b"a.",
        b"]N\x85s.",
        b"t.",
        b"(K\x01d.",
        b"X\x05\x00\x00\x00abc",
        b"\xff",
        b"\x97.",
        b"K\x01K\x02R.",
        b"I12x\n.",
    ] {
        assert!(eval(p).is_err(), "{p:?}");
    }
}

#[test]
fn stack_limit() {
    let mut p = vec![b'N'; MAX_STACK + 10];
    p.push(b'.');
    let e = eval(&p).err().unwrap();
    assert!(e.contains("stack"), "{e}");
    let mut p = vec![b'('; MAX_STACK + 10];
    p.push(b'.');
    assert!(eval(&p).is_err());
}

#[test]
fn memo_limit() {
    let mut p = b"\x80\x04N".to_vec();
    p.extend(std::iter::repeat_n(0x94u8, MAX_MEMO + 1));
    p.push(b'.');
    let e = eval(&p).err().unwrap();
    assert!(e.contains("memo"), "{e}");
}

#[test]
fn object_limit() {
    // Empty lists appended to one list: one byte per object.
    let mut p = b"](".to_vec();
    for _ in 0..101 {
        p.extend(std::iter::repeat_n(b']', 1000));
        p.extend(b"e(");
    }
    p.push(b'.');
    let mut budget = Budget {
        max_objects: 100_000,
        ..Budget::new(0)
    };
    let e = run(&p, &mut Inert, &mut budget).err().unwrap();
    assert!(e.contains("objects"), "{e}");
}

#[test]
fn copies_of_memoized_containers_are_charged() {
    // REDUCE with one memoized 100 000-item tuple, 10 000 times over.
    let mut p = b"\x80\x02cm\nf\nq\x00(".to_vec();
    p.extend(std::iter::repeat_n(b'N', 100_000));
    p.extend(b"tq\x01");
    for _ in 0..10_000 {
        p.extend(b"h\x00h\x01R0");
    }
    p.push(b'.');
    let e = eval(&p).err().unwrap();
    assert!(e.contains("objects"), "{e}");
}

#[test]
fn deep_nesting_drops_without_recursion() {
    // 120 000 nested lists (about the most a 240 KB pickle's budget
    // allows): built and dropped without a stack overflow.
    let n = 120_000;
    let mut p = vec![b']'; n];
    p.extend(std::iter::repeat_n(b'a', n - 1));
    p.push(b'.');
    let v = eval(&p).unwrap();
    assert!(matches!(v, Value::List(_)));
    drop(v);
}
