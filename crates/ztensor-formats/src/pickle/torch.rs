//! What torch's pickles mean: the few constructors the restricted machine
//! interprets (tensor rebuild functions, parameters, `OrderedDict`, storage
//! types, dtypes, `torch.Size`...), finding the tensors in the unpickled
//! object graph, and projecting each tensor view onto its storage's bytes.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use ztensor::{Component, DType, Encoding, TensorInfo, Transform};

use super::vm::{Budget, Global, Hooks, Map, Native, Object, Seq, Value};
use super::Located;
use crate::transforms::{ByteSwap, Chain, Inflate, Strided};

/// Deepest container nesting searched for tensors.
pub(crate) const MAX_DEPTH: usize = 1000;
/// Most dimensions of a tensor.
const MAX_NDIM: usize = 64;
/// Longest tensor name.
const MAX_NAME: usize = 16 << 10;

// ---------------------------------------------------------------- dtypes

/// A torch dtype that zTensor can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TorchDtype {
    /// torch's name (`"float32"`).
    pub name: &'static str,
    /// Storage dtype of one element (of each half, for complex numbers).
    pub dtype: DType,
    /// Logical type label (fp8 variants, complex).
    pub logical: Option<&'static str>,
    /// Bytes per logical element.
    pub itemsize: u64,
}

const fn td(name: &'static str, dtype: DType, logical: Option<&'static str>) -> TorchDtype {
    let n = if logical.is_some() && matches!(dtype, DType::F32 | DType::F64) {
        2
    } else {
        1
    };
    TorchDtype {
        name,
        dtype,
        logical,
        itemsize: (dtype.size() * n) as u64,
    }
}

/// The dtype `torch.<name>` stands for.
pub(crate) fn dtype_by_name(name: &str) -> Result<TorchDtype, String> {
    Ok(match name {
        "float64" | "double" => td("float64", DType::F64, None),
        "float32" | "float" => td("float32", DType::F32, None),
        "float16" | "half" => td("float16", DType::F16, None),
        "bfloat16" => td("bfloat16", DType::BF16, None),
        "int64" | "long" => td("int64", DType::I64, None),
        "int32" | "int" => td("int32", DType::I32, None),
        "int16" | "short" => td("int16", DType::I16, None),
        "int8" => td("int8", DType::I8, None),
        "uint64" => td("uint64", DType::U64, None),
        "uint32" => td("uint32", DType::U32, None),
        "uint16" => td("uint16", DType::U16, None),
        "uint8" => td("uint8", DType::U8, None),
        "bool" => td("bool", DType::Bool, None),
        "float8_e4m3fn" => td("float8_e4m3fn", DType::U8, Some("f8_e4m3fn")),
        "float8_e5m2" => td("float8_e5m2", DType::U8, Some("f8_e5m2")),
        "float8_e4m3fnuz" => td("float8_e4m3fnuz", DType::U8, Some("f8_e4m3fnuz")),
        "float8_e5m2fnuz" => td("float8_e5m2fnuz", DType::U8, Some("f8_e5m2fnuz")),
        "float8_e8m0fnu" => td("float8_e8m0fnu", DType::U8, Some("f8_e8m0fnu")),
        // Two FP4 values per byte: torch counts the last dimension in bytes.
        "float4_e2m1fn_x2" => td("float4_e2m1fn_x2", DType::U8, Some("f4_e2m1fn_x2")),
        "complex64" | "cfloat" => td("complex64", DType::F32, Some("complex64")),
        "complex128" | "cdouble" => td("complex128", DType::F64, Some("complex128")),
        "qint8" | "quint8" | "qint32" | "quint4x2" | "quint2x4" => {
            return Err(format!("quantized dtype torch.{name} is not supported"))
        }
        other => return Err(format!("dtype torch.{other} is not supported")),
    })
}

/// Bytes per element and dtype of a storage class (`torch.FloatStorage`,
/// `torch.storage.UntypedStorage`, ...). The size is known even for
/// classes whose dtype is not supported, so the legacy format's storage
/// records can still be stepped over.
pub(crate) fn storage_class(g: &Global) -> (Option<u64>, Result<TorchDtype, String>) {
    let full = format!("{}.{}", g.module, g.name);
    let typed = |name: &str| {
        let d = dtype_by_name(name).expect("known dtype");
        (Some(d.itemsize), Ok(d))
    };
    let unsupported = |size: u64, what: &str| {
        (
            Some(size),
            Err(format!("storage type {full} ({what}) is not supported")),
        )
    };
    if !matches!(g.module.as_str(), "torch" | "torch.cuda" | "torch.storage") {
        return (None, Err(format!("{full} is not a storage type")));
    }
    match g.name.as_str() {
        "DoubleStorage" => typed("float64"),
        "FloatStorage" => typed("float32"),
        "HalfStorage" => typed("float16"),
        "BFloat16Storage" => typed("bfloat16"),
        "LongStorage" => typed("int64"),
        "IntStorage" => typed("int32"),
        "ShortStorage" => typed("int16"),
        "CharStorage" => typed("int8"),
        "ByteStorage" => typed("uint8"),
        "BoolStorage" => typed("bool"),
        "ComplexFloatStorage" => typed("complex64"),
        "ComplexDoubleStorage" => typed("complex128"),
        "ComplexHalfStorage" => unsupported(4, "complex32"),
        "QInt8Storage" | "QUInt8Storage" | "QUInt4x2Storage" | "QUInt2x4Storage" => {
            unsupported(1, "quantized")
        }
        "QInt32Storage" => unsupported(4, "quantized"),
        "UntypedStorage" | "_UntypedStorage" | "TypedStorage" => (
            Some(1),
            Err(format!(
                "its storage ({full}) has no dtype and the tensor names none"
            )),
        ),
        _ => (None, Err(format!("unknown storage type {full}"))),
    }
}

// ---------------------------------------------------------------- values

/// A storage a checkpoint refers to by key.
#[derive(Debug)]
pub(crate) struct Storage {
    /// Its key (the archive member `data/<key>`, or the legacy record key).
    pub key: String,
    /// Bytes per element of its storage class (1 for untyped storages).
    pub itemsize: Option<u64>,
    /// The dtype of its storage class.
    pub dtype: Result<TorchDtype, String>,
    /// Element count the persistent id declares.
    pub declared: Option<u64>,
    /// Where its bytes are, when known while unpickling (storages pickled
    /// by value); otherwise the archive's locator finds them by key.
    pub inline: Option<Result<Located, String>>,
}

/// A tensor view of a storage.
#[derive(Debug)]
pub(crate) struct TensorView {
    pub storage: Rc<Storage>,
    pub dtype: TorchDtype,
    /// Storage offset in elements.
    pub offset: u64,
    pub shape: Vec<u64>,
    /// Strides in elements.
    pub stride: Vec<u64>,
}

/// A tensor found while unpickling, or why it cannot be read.
#[derive(Debug)]
pub(crate) struct TensorRef(pub Result<TensorView, String>);

impl Native for Storage {
    fn kind(&self) -> &'static str {
        "storage"
    }
}

impl Native for TensorRef {
    fn kind(&self) -> &'static str {
        "tensor"
    }
}

fn tensor(r: Result<TensorView, String>) -> Value {
    Value::Native(Rc::new(TensorRef(r)))
}

fn broken(message: impl Into<String>) -> Value {
    tensor(Err(message.into()))
}

fn opaque(class: String, args: Vec<Value>) -> Value {
    Value::Object(Rc::new(Object::new(class, args)))
}

// ---------------------------------------------------------------- hooks

/// Parses a nested legacy checkpoint found in a pickle's bytes (a storage
/// pickled by value): returns the storage it holds, located absolutely,
/// and records the globals its pickles name in the budget.
pub(crate) type NestedLoader = fn(&[u8], u64, &mut Budget) -> Result<Rc<Storage>, String>;

/// The torch interpretation of calls and persistent ids.
pub(crate) struct TorchHooks<'a> {
    /// Storages by key: every reference to one key shares one storage.
    storages: HashMap<String, Rc<Storage>>,
    /// Storages pickled by value, by their position in the input.
    by_value: HashMap<(usize, usize), Rc<Storage>>,
    /// The pickle's bytes and their absolute position in the file, when
    /// the pickle is stored uncompressed (needed for storages pickled by value).
    input: &'a [u8],
    base: Option<u64>,
    nested: Option<NestedLoader>,
    /// Tensors created so far (bounds how many names they may get).
    pub tensors: u64,
    depth: usize,
}

impl<'a> TorchHooks<'a> {
    /// Hooks for a pickle whose bytes are `input`, found at absolute
    /// offset `base` of the file when it is stored as is.
    pub(crate) fn new(input: &'a [u8], base: Option<u64>, nested: Option<NestedLoader>) -> Self {
        TorchHooks {
            storages: HashMap::new(),
            by_value: HashMap::new(),
            input,
            base,
            nested,
            tensors: 0,
            depth: 0,
        }
    }

    /// The storages referred to by key.
    pub(crate) fn storages(&self) -> &HashMap<String, Rc<Storage>> {
        &self.storages
    }

    fn rebuild(&mut self, args: &[Value], dtype: Option<&Value>) -> Value {
        self.tensors += 1;
        tensor(rebuild(args, dtype))
    }

    fn storage_from_bytes(&mut self, args: &[Value], budget: &mut Budget) -> Value {
        let failed = |message: String| Value::Native(failed_storage(message));
        let Some(Value::Bytes { at, len }) = args.first() else {
            return failed("its storage is pickled by value without its bytes".into());
        };
        let Some(at) = at else {
            return failed(
                "its storage is pickled by value as latin-1 text (pickle protocol 2), which is not supported"
                    .into(),
            );
        };
        let (Some(base), Some(load)) = (self.base, self.nested) else {
            return failed(
                "its storage is pickled by value inside a compressed or nested pickle, which is not supported"
                    .into(),
            );
        };
        if let Some(s) = self.by_value.get(&(*at, *len)) {
            return Value::Native(s.clone());
        }
        let storage =
            load(&self.input[*at..*at + *len], base + *at as u64, budget).unwrap_or_else(|e| {
                failed_storage(format!("its storage pickled by value is invalid: {e}"))
            });
        self.by_value.insert((*at, *len), storage.clone());
        Value::Native(storage)
    }
}

/// A storage whose bytes cannot be found, and why.
fn failed_storage(message: String) -> Rc<Storage> {
    Rc::new(Storage {
        key: "<pickled by value>".into(),
        itemsize: None,
        dtype: Err(message.clone()),
        declared: None,
        inline: Some(Err(message)),
    })
}

impl Hooks for TorchHooks<'_> {
    fn call(
        &mut self,
        callable: &Value,
        args: Vec<Value>,
        budget: &mut Budget,
    ) -> Result<Value, String> {
        let Value::Global(g) = callable else {
            return Ok(opaque(format!("<{}>", callable.kind()), args));
        };
        let (m, n) = (g.module.as_str(), g.name.as_str());
        let builtins = matches!(m, "builtins" | "__builtin__");
        Ok(match (m, n) {
            ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => self.rebuild(&args, None),
            ("torch._utils", "_rebuild_tensor_v3") => {
                self.rebuild(&args, Some(args.get(6).unwrap_or(&Value::None)))
            }
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                match args.first() {
                    Some(t) if t.is_native::<TensorRef>() => t.clone(),
                    Some(other) => broken(format!(
                        "a parameter wraps a {}, not a tensor",
                        other.kind()
                    )),
                    None => broken("a parameter without data"),
                }
            }
            ("torch._tensor", "_rebuild_from_type_v2" | "_rebuild_from_type") => {
                // (func, type, args, state): a tensor subclass; its data is func(*args).
                let inner = match args.get(2) {
                    Some(Value::Tuple(t)) => t.0.borrow().clone(),
                    _ => Vec::new(),
                };
                budget.charge(inner.len())?;
                match args.first() {
                    Some(func) if self.depth < 8 => {
                        self.depth += 1;
                        let v = self.call(func, inner, budget);
                        self.depth -= 1;
                        v?
                    }
                    _ => broken(format!("tensor rebuilt by {m}.{n} with unknown arguments")),
                }
            }
            ("torch._utils", "_rebuild_qtensor") => {
                broken("quantized tensors (torch._utils._rebuild_qtensor) are not supported")
            }
            ("torch._utils", "_rebuild_sparse_tensor" | "_rebuild_sparse_csr_tensor") => broken(
                format!("sparse tensors ({m}.{n}) are not supported in pickles"),
            ),
            ("torch._utils", "_rebuild_meta_tensor_no_storage") => {
                broken("a tensor on the meta device has no data")
            }
            _ if m.starts_with("torch") && n.starts_with("_rebuild") => {
                broken(format!("tensors rebuilt by {m}.{n} are not supported"))
            }
            ("torch.storage", "_load_from_bytes") => self.storage_from_bytes(&args, budget),
            ("collections", "OrderedDict" | "defaultdict")
            | ("builtins" | "__builtin__", "dict") => {
                let pairs = match args.first() {
                    Some(Value::Dict(d)) if n == "dict" || n == "OrderedDict" => {
                        d.0.borrow().clone()
                    }
                    Some(v @ (Value::List(_) | Value::Tuple(_))) if n != "defaultdict" => v
                        .items()
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|p| match p.items_up_to(2) {
                            Some(kv) if kv.len() == 2 => Some((kv[0].clone(), kv[1].clone())),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                budget.charge(2 * pairs.len())?;
                Value::Dict(Rc::new(Map(RefCell::new(pairs))))
            }
            ("torch", "Size") => {
                let items = args.first().and_then(Value::items).unwrap_or_default();
                budget.charge(items.len())?;
                Value::Tuple(Rc::new(Seq(RefCell::new(items))))
            }
            (_, "list" | "tuple" | "set" | "frozenset") if builtins => {
                let items = args.first().and_then(Value::items).unwrap_or_default();
                budget.charge(items.len())?;
                let seq = Rc::new(Seq(RefCell::new(items)));
                match n {
                    "list" => Value::List(seq),
                    "tuple" => Value::Tuple(seq),
                    _ => Value::Set(seq),
                }
            }
            ("_codecs", "encode") => match args.first() {
                Some(Value::Str(s)) => Value::Bytes {
                    at: None,
                    len: s.chars().count(),
                },
                _ => opaque("_codecs.encode".into(), args),
            },
            ("copyreg" | "copy_reg", "_reconstructor") => {
                // (cls, base, state): an instance of cls; BUILD fills it.
                let class = args.first().map_or_else(|| "object".into(), Value::kind);
                opaque(class, Vec::new())
            }
            _ => opaque(format!("{m}.{n}"), args),
        })
    }

    fn persistent_load(&mut self, pid: Value) -> Result<Value, String> {
        // Only the first six items matter (a huge memoized tuple is not copied).
        let items: Vec<Value> = match &pid {
            Value::Tuple(t) => t.0.borrow().iter().take(6).cloned().collect(),
            _ => Vec::new(),
        };
        if items.len() < 5 || !matches!(&items[0], Value::Str(s) if &**s == "storage") {
            return Ok(opaque("persistent id".into(), vec![pid]));
        }
        let key = match &items[2] {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            other => return Err(format!("a storage key is a {}", other.kind())),
        };
        let (itemsize, mut dtype) = match &items[1] {
            Value::Global(g) => storage_class(g),
            other => (None, Err(format!("storage type is a {}", other.kind()))),
        };
        let declared = match items[4] {
            Value::Int(n) => u64::try_from(n).ok(),
            _ => None,
        };
        if let Some(s) = self.storages.get(&key) {
            // One record named with another type or size (a damaged key):
            // torch.load refuses it; its tensor must not read another's bytes.
            let same = s.itemsize == itemsize
                && s.declared == declared
                && s.dtype.as_ref().ok() == dtype.as_ref().ok();
            if !same {
                return Ok(Value::Native(Rc::new(Storage {
                    key: key.clone(),
                    itemsize,
                    dtype: Err(format!(
                        "storage '{key}' is named again with another type or size (damaged)"
                    )),
                    declared,
                    inline: None,
                })));
            }
            return Ok(Value::Native(s.clone()));
        }
        if !matches!(items.get(5), None | Some(Value::None)) {
            dtype = Err("storage views (torch < 0.4) are not supported".into());
        }
        let storage = Rc::new(Storage {
            key: key.clone(),
            itemsize,
            dtype,
            declared,
            inline: None,
        });
        self.storages.insert(key, storage.clone());
        Ok(Value::Native(storage))
    }
}

fn rebuild(args: &[Value], dtype: Option<&Value>) -> Result<TensorView, String> {
    let storage = match args.first().map(|v| (v, v.native::<Storage>())) {
        Some((_, Some(s))) => s,
        Some((other, None)) => {
            return Err(format!(
                "its storage is a {} rather than a storage saved with the checkpoint",
                other.kind()
            ))
        }
        None => return Err("a tensor without a storage".into()),
    };
    let offset = match args.get(1) {
        Some(Value::Int(i)) => u64::try_from(*i).ok(),
        _ => None,
    }
    .ok_or("its storage offset is not a non-negative integer")?;
    let shape = dims(args.get(2)).ok_or("its size is not a tuple of non-negative integers")?;
    let stride = dims(args.get(3)).ok_or("its stride is not a tuple of non-negative integers")?;
    if shape.len() != stride.len() {
        return Err(format!(
            "its size {shape:?} and stride {stride:?} differ in length"
        ));
    }
    let dtype = match dtype {
        Some(Value::Global(g)) if g.module == "torch" => dtype_by_name(&g.name)?,
        Some(other) => return Err(format!("its dtype is a {}", other.kind())),
        None => storage.dtype.clone()?,
    };
    Ok(TensorView {
        storage,
        dtype,
        offset,
        shape,
        stride,
    })
}

fn dims(v: Option<&Value>) -> Option<Vec<u64>> {
    v?.items_up_to(MAX_NDIM)?
        .iter()
        .map(|d| match d {
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- finding tensors

/// A tensor reference found in the object graph, with its dotted name.
pub(crate) struct Found {
    pub name: String,
    pub tensor: Rc<TensorRef>,
}

/// Collects every tensor reachable from `root`, named by the dotted path of
/// dict keys and list/tuple indices that leads to it (`"a.b.0.c"`; a bare
/// tensor is named `prefix`, i.e. `""` at the top). Objects the machine did
/// not interpret (a pickled `nn.Module`, a TorchScript module, a
/// dataclass...) are searched through their arguments, state, items and
/// list items; `_parameters`, `_buffers` and `_modules` in an object's
/// state add no name component, so a pickled module yields its
/// `state_dict()` names. The search uses an explicit work list (no native
/// recursion), does not follow cycles, and bounds depth, references
/// followed, tensors found and name bytes built.
pub(crate) fn find_tensors(
    root: &Value,
    prefix: &str,
    budget: &Budget,
    tensors_created: u64,
    name_bytes_limit: u64,
    out: &mut Vec<Found>,
) -> Result<(), String> {
    let mut w = Walker {
        out,
        visits: 0,
        max_visits: 2 * budget.edges + 1_000_000,
        max_found: 8 * tensors_created + 10_000,
        name_bytes: 0,
        max_name_bytes: name_bytes_limit,
        path: HashSet::new(),
    };
    let mut tasks = vec![Task::Visit {
        value: root.clone(),
        parent: Rc::from(prefix),
        key: None,
        segments: usize::from(!prefix.is_empty()),
        depth: 0,
    }];
    while let Some(task) = tasks.pop() {
        let (value, parent, key, segments, depth) = match task {
            Task::Leave(ptr) => {
                w.path.remove(&ptr);
                continue;
            }
            Task::Visit {
                value,
                parent,
                key,
                segments,
                depth,
            } => (value, parent, key, segments, depth),
        };
        w.visits += 1;
        if w.visits > w.max_visits {
            return Err(format!(
                "the object graph expands to more than {} references (a reference bomb?)",
                w.max_visits
            ));
        }
        let (name, segments) = match key {
            None => (parent, segments),
            Some(k) => (w.join(&parent, segments, &k)?, segments + 1),
        };
        if let Some(t) = value.native::<TensorRef>() {
            w.emit(&name, &t)?;
            continue;
        }
        let ptr = match &value {
            Value::Dict(d) => Rc::as_ptr(d).cast::<()>(),
            Value::List(s) | Value::Tuple(s) => Rc::as_ptr(s).cast::<()>(),
            Value::Object(o) => Rc::as_ptr(o).cast::<()>(),
            _ => continue,
        };
        if w.path.contains(&ptr) {
            continue; // a cycle: everything on it is already being searched
        }
        if depth >= MAX_DEPTH {
            return Err(format!(
                "objects are nested more than {MAX_DEPTH} levels deep"
            ));
        }
        w.path.insert(ptr);
        tasks.push(Task::Leave(ptr));
        let mut children = Vec::new();
        match &value {
            Value::Dict(d) => w.dict(&d.0.borrow(), false, &mut children)?,
            Value::List(s) | Value::Tuple(s) => seq(&s.0.borrow(), &mut children),
            Value::Object(o) => w.object(o, &mut children)?,
            _ => {}
        }
        for (key, value) in children.into_iter().rev() {
            tasks.push(Task::Visit {
                value,
                parent: name.clone(),
                key,
                segments,
                depth: depth + 1,
            });
        }
    }
    Ok(())
}

/// Work for the search: a value to visit under its parent's name plus one
/// more component (`None`: no component), or leaving a container.
enum Task {
    Visit {
        value: Value,
        parent: Rc<str>,
        key: Option<String>,
        segments: usize,
        depth: usize,
    },
    Leave(*const ()),
}

type Children = Vec<(Option<String>, Value)>;

struct Walker<'o> {
    out: &'o mut Vec<Found>,
    visits: u64,
    max_visits: u64,
    max_found: u64,
    /// Bytes of names and keys built so far.
    name_bytes: u64,
    max_name_bytes: u64,
    /// Containers on the path from the root (cycles are not followed).
    path: HashSet<*const ()>,
}

impl Walker<'_> {
    fn spend(&mut self, bytes: usize) -> Result<(), String> {
        self.name_bytes += bytes as u64;
        if self.name_bytes > self.max_name_bytes {
            return Err("tensor names are too long in total (a reference bomb?)".into());
        }
        Ok(())
    }

    fn join(&mut self, parent: &str, segments: usize, key: &str) -> Result<Rc<str>, String> {
        let len = parent.len() + usize::from(segments > 0) + key.len();
        if len > MAX_NAME {
            return Err(format!("a tensor name is longer than {MAX_NAME} bytes"));
        }
        self.spend(len)?;
        let mut name = String::with_capacity(len);
        if segments > 0 {
            name.push_str(parent);
            name.push('.');
        }
        name.push_str(key);
        Ok(name.into())
    }

    fn emit(&mut self, name: &str, t: &Rc<TensorRef>) -> Result<(), String> {
        if self.out.len() as u64 >= self.max_found {
            return Err(format!(
                "more than {} tensor references (a reference bomb?)",
                self.max_found
            ));
        }
        self.out.push(Found {
            name: name.to_string(),
            tensor: t.clone(),
        });
        Ok(())
    }

    /// A dict's items; a repeated key keeps its last value, as in Python.
    /// `module_state`: an object's attributes, where the `nn.Module`
    /// containers add no name component.
    fn dict(
        &mut self,
        pairs: &[(Value, Value)],
        module_state: bool,
        out: &mut Children,
    ) -> Result<(), String> {
        let mut index: HashMap<String, usize> = HashMap::new();
        let start = out.len();
        for (k, v) in pairs {
            let key = key_name(k);
            self.spend(key.len())?;
            let transparent =
                module_state && matches!(key.as_str(), "_parameters" | "_buffers" | "_modules");
            match index.get(&key) {
                Some(&i) => out[start + i].1 = v.clone(),
                None => {
                    index.insert(key.clone(), out.len() - start);
                    out.push(((!transparent).then_some(key), v.clone()));
                }
            }
        }
        // Entries before `start` belong to the caller and stay.
        let mut seen = 0;
        out.retain(|(_, v)| {
            seen += 1;
            seen <= start || is_searchable(v)
        });
        Ok(())
    }

    fn object(&mut self, o: &Object, out: &mut Children) -> Result<(), String> {
        seq(&o.args, out);
        match &*o.state.borrow() {
            Some(Value::Dict(d)) => self.dict(&d.0.borrow(), true, out)?,
            // (dict state, slots state)
            Some(Value::Tuple(t)) if t.0.borrow().len() == 2 => {
                for part in t.0.borrow().iter() {
                    match part {
                        Value::Dict(d) => self.dict(&d.0.borrow(), true, out)?,
                        other => out.push((None, other.clone())),
                    }
                }
            }
            Some(other) => out.push((None, other.clone())),
            None => {}
        }
        self.dict(&o.items.borrow(), false, out)?;
        seq(&o.list.borrow(), out);
        Ok(())
    }
}

fn seq(items: &[Value], out: &mut Children) {
    for (i, v) in items.iter().enumerate() {
        if is_searchable(v) {
            out.push((Some(i.to_string()), v.clone()));
        }
    }
}

fn is_searchable(v: &Value) -> bool {
    matches!(
        v,
        Value::Dict(_) | Value::List(_) | Value::Tuple(_) | Value::Object(_)
    ) || v.is_native::<TensorRef>()
}

/// A dict key as a name component: strings as they are, numbers in
/// Python's notation, tuples of those in parentheses.
fn key_name(k: &Value) -> String {
    match k {
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::None => "None".into(),
        Value::Float(f) => format!("{f:?}"),
        Value::Tuple(t) => {
            let parts: Vec<String> =
                t.0.borrow()
                    .iter()
                    .map(|p| match p {
                        Value::Tuple(_) => "(...)".into(),
                        other => key_name(other),
                    })
                    .collect();
            format!("({})", parts.join(", "))
        }
        other => format!("<{}>", other.kind()),
    }
}

// ---------------------------------------------------------------- projection

/// Where a storage's bytes are in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StorageBytes {
    /// Stored as they are at `[offset, offset + len)`.
    Stored { offset: u64, len: u64 },
    /// A raw DEFLATE stream of `compressed` bytes at `offset` inflating to `len`.
    Deflated {
        offset: u64,
        compressed: u64,
        len: u64,
    },
}

impl StorageBytes {
    fn len(self) -> u64 {
        match self {
            StorageBytes::Stored { len, .. } | StorageBytes::Deflated { len, .. } => len,
        }
    }
}

/// Describes one tensor view in the object model: a zero-copy range of a
/// stored storage when the view is contiguous, else a decoding chain
/// (inflate, byte swap, strided gather) over the storage's bytes. Every
/// view is checked against the size of its storage.
pub(crate) fn tensor_info(
    name: &str,
    view: &TensorView,
    loc: &Located,
) -> Result<TensorInfo, String> {
    let t = view.dtype;
    let w = t.itemsize;
    let key = &view.storage.key;
    let usable = loc.bytes.len();
    if let (Some(n), Some(size)) = (view.storage.declared, view.storage.itemsize) {
        let declared = n
            .checked_mul(size)
            .ok_or_else(|| format!("storage '{key}' declares an impossible size"))?;
        // As torch.load: a record of another size is damage (e.g. another
        // record's, when a damaged name or size header points here).
        if declared != usable {
            return Err(format!(
                "storage '{key}' declares {declared} bytes but the file holds {usable}"
            ));
        }
    }
    let storage_elems = usable / w;
    let strided = Strided {
        itemsize: w as usize,
        shape: view.shape.clone(),
        strides: view.stride.clone(),
        offset: view.offset,
    };
    let nbytes = strided.validate(storage_elems).map_err(|e| {
        format!(
            "view (offset {}, size {:?}, stride {:?}) does not fit storage '{key}' of {storage_elems} {} elements: {e}",
            view.offset, view.shape, view.stride, t.name
        )
    })?;
    let component = |offset, length, encoding| Component {
        dtype: t.dtype,
        logical_type: t.logical.map(str::to_string),
        offset,
        length,
        encoding,
        digest: None,
    };
    let swap_width = if loc.big_endian && t.dtype.size() > 1 {
        Some(t.dtype.size())
    } else {
        None
    };
    let data = if nbytes == 0 {
        let at = match loc.bytes {
            StorageBytes::Stored { offset, .. } | StorageBytes::Deflated { offset, .. } => offset,
        };
        component(at, 0, Encoding::Raw)
    } else {
        // Elements [lo, hi) of the storage hold the whole view.
        let lo = view.offset;
        let hi = view
            .shape
            .iter()
            .zip(&view.stride)
            .fold(lo, |acc, (&d, &s)| acc + (d - 1) * s)
            + 1;
        let contiguous = is_contiguous(&view.shape, &view.stride);
        match loc.bytes {
            StorageBytes::Stored { offset, .. } => {
                let start = offset + lo * w;
                let len = (hi - lo) * w;
                let mut steps: Vec<Arc<dyn Transform>> = Vec::new();
                if let Some(width) = swap_width {
                    steps.push(Arc::new(ByteSwap { width, len }));
                }
                if !contiguous {
                    steps.push(Arc::new(Strided {
                        offset: 0,
                        ..strided
                    }));
                }
                component(start, len, encoding(steps))
            }
            StorageBytes::Deflated {
                offset,
                compressed,
                len,
            } => {
                let mut steps: Vec<Arc<dyn Transform>> = vec![Arc::new(Inflate {
                    decoded_len: len,
                    skip: 0,
                })];
                if let Some(width) = swap_width {
                    steps.push(Arc::new(ByteSwap { width, len }));
                }
                if !(contiguous && lo == 0 && nbytes == len) {
                    steps.push(Arc::new(strided));
                }
                component(offset, compressed, encoding(steps))
            }
        }
    };
    Ok(TensorInfo::dense(
        name.to_string(),
        view.shape.clone(),
        data,
    ))
}

fn encoding(mut steps: Vec<Arc<dyn Transform>>) -> Encoding {
    match steps.len() {
        0 => Encoding::Raw,
        1 => Encoding::Transformed(steps.pop().expect("one step")),
        _ => Encoding::Transformed(Arc::new(Chain(steps))),
    }
}

/// Row-major contiguity (dimensions of size 1 may have any stride).
fn is_contiguous(shape: &[u64], stride: &[u64]) -> bool {
    let mut expected = 1u64;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_table() {
        let c = dtype_by_name("complex64").unwrap();
        assert_eq!(
            (c.dtype, c.logical, c.itemsize),
            (DType::F32, Some("complex64"), 8)
        );
        let f = dtype_by_name("float8_e5m2fnuz").unwrap();
        assert_eq!(
            (f.dtype, f.logical, f.itemsize),
            (DType::U8, Some("f8_e5m2fnuz"), 1)
        );
        assert_eq!(dtype_by_name("uint16").unwrap().itemsize, 2);
        assert!(dtype_by_name("qint8").unwrap_err().contains("quantized"));
        assert!(dtype_by_name("complex32").is_err());
    }

    #[test]
    fn contiguity() {
        assert!(is_contiguous(&[3, 4], &[4, 1]));
        assert!(is_contiguous(&[1, 4], &[99, 1]));
        assert!(!is_contiguous(&[4, 3], &[1, 4]));
        assert!(!is_contiguous(&[2, 3], &[0, 1]));
        assert!(is_contiguous(&[], &[]));
    }
}
