//! What the globals a pickle names (`GLOBAL`, `STACK_GLOBAL`, `INST`) mean
//! for the user: the reader never imports or calls any of them, but
//! `pickle.load` and `torch.load(weights_only=False)` would.
//!
//! * [`Class::Denied`]: the global can run code or touch the system (a shell
//!   command, `eval`, a file write, a network call, another unpickler...).
//!   A file naming one is refused as a whole: it was crafted to attack
//!   whoever loads it the usual way.
//! * [`Class::Known`]: the reader interprets it (tensor rebuild functions,
//!   storage types, dtypes, `OrderedDict`...) or it only builds a plain
//!   value that `torch.load(weights_only=True)` accepts too.
//! * [`Class::Unknown`]: anything else (`argparse.Namespace`, a user class,
//!   numpy scalars...). The objects it would build are skipped (searched for
//!   tensors, never built); callers warn about them, or refuse them when
//!   strict.

use super::torch::{dtype_by_name, storage_class};
use super::vm::{Global, Seen};

/// What a global is to the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Runs code or touches the system when unpickled: the file is refused.
    Denied,
    /// Interpreted, or a plain value: no note needed.
    Known,
    /// Not interpreted: its objects are skipped.
    Unknown,
}

/// Which names of a module a [`DENIED`] row covers.
enum Names {
    /// Every name, and every submodule.
    All,
    /// These names only (dotted for class attributes).
    Only(&'static [&'static str]),
    /// Every name but these (harmless classes of a dangerous module).
    AllBut(&'static [&'static str]),
}
use Names::{All, AllBut, Only};

/// Globals that can run code or touch the system when a pickle is loaded.
///
/// Sources: picklescan (project mmaitre314/picklescan, file
/// `src/picklescan/scanner.py`, table `_unsafe_globals`) and modelscan
/// (project protectai/modelscan, file `modelscan/settings.py`, table
/// `unsafe_globals`), checked in 2025-2026; rows marked "ours" are
/// additions by this project for the reason given. Like picklescan, a
/// whole-module row covers its submodules (`os.path.join` is denied with
/// `os`). Deviations: `uuid` keeps `UUID`/`SafeUUID` (plain values; only its
/// command-running helpers are denied) and picklescan's `test` row is
/// narrowed to `test.support`, so a project package named `test` is not
/// refused.
const DENIED: &[(&str, Names)] = &[
    // --- both picklescan and modelscan
    (
        "builtins",
        Only(&[
            "eval",
            "exec",
            "compile",
            "open",
            "getattr",
            "apply",
            "breakpoint",
            // modelscan; ours: the rest (attribute and namespace gadgets,
            // reading the terminal, py2 file execution)
            "__import__",
            "setattr",
            "delattr",
            "globals",
            "locals",
            "vars",
            "input",
            "execfile",
            "reload",
        ]),
    ),
    ("os", All),
    ("nt", All),
    ("posix", All),
    ("sys", All),
    ("subprocess", All),
    ("socket", All),
    ("runpy", All),
    ("pty", All),
    ("pickle", All),
    ("_pickle", All),
    ("shutil", All),
    ("asyncio", All),
    ("bdb", All),
    ("pdb", All),
    ("webbrowser", All),
    ("httplib", All),
    ("requests.api", All),
    ("aiohttp", All),
    (
        "operator",
        Only(&["attrgetter", "itemgetter", "methodcaller"]),
    ),
    // --- picklescan
    (
        "_operator",
        Only(&["attrgetter", "itemgetter", "methodcaller"]),
    ),
    ("commands", All),
    ("ctypes", All),
    ("functools", Only(&["partial"])),
    ("types", Only(&["CodeType"])),
    (
        "cloudpickle.cloudpickle",
        Only(&[
            "_builtin_type",
            "_make_function",
            "_function_setstate",
            "_make_cell",
            "_make_empty_cell",
            "subimport",
        ]),
    ),
    ("logging", Only(&["FileHandler"])),
    ("_io", Only(&["FileIO", "open", "open_code"])), // ours: open, open_code
    ("numpy.f2py", All),
    ("numpy.testing._private.utils", All),
    ("ssl", All),
    ("cProfile", All),
    ("profile", All),
    ("timeit", All),
    ("trace", Only(&["Trace.run", "Trace.runctx"])),
    ("distutils.file_util", All),
    ("doctest", Only(&["debug_script"])),
    ("ensurepip", Only(&["_run_pip"])),
    (
        "idlelib.autocomplete",
        Only(&["AutoComplete.get_entity", "AutoComplete.fetch_completions"]),
    ),
    (
        "idlelib.calltip",
        Only(&["Calltip.fetch_tip", "get_entity"]),
    ),
    ("idlelib.debugobj", Only(&["ObjectTreeItem.SetText"])),
    (
        "idlelib.pyshell",
        Only(&[
            "ModifiedInterpreter.runcode",
            "ModifiedInterpreter.runcommand",
        ]),
    ),
    ("idlelib.run", Only(&["Executive.runcode"])),
    ("imaplib", Only(&["IMAP4_stream"])),
    ("lib2to3.pgen2.grammar", Only(&["Grammar.loads"])),
    ("lib2to3.pgen2.pgen", Only(&["ParserGenerator.make_label"])),
    ("pip", All),
    ("pkgutil", Only(&["resolve_name"])),
    ("pydoc", All),
    ("test.support", All),
    ("urllib.request", All),
    ("uuid", AllBut(&["UUID", "SafeUUID"])),
    ("venv", All),
    ("_osx_support", All),
    ("_aix_support", All),
    ("_pyrepl", All),
    ("torch._dynamo.guards", Only(&["GuardBuilder.get"])),
    ("torch._inductor.codecache", Only(&["compile_file"])),
    (
        "torch.fx.experimental.symbolic_shapes",
        Only(&["ShapeEnv.evaluate_guards_expression"]),
    ),
    ("torch.jit.unsupported_tensor_ops", Only(&["execWrapper"])),
    ("torch.serialization", Only(&["load"])),
    (
        "torch.utils._config_module",
        Only(&["ConfigModule.load_config"]),
    ),
    (
        "torch.utils.bottleneck.__main__",
        Only(&["run_cprofile", "run_autograd_prof"]),
    ),
    ("torch.utils.collect_env", Only(&["run"])),
    (
        "torch.utils.data.datapipes.utils.decoder",
        Only(&["basichandlers"]),
    ),
    // --- ours
    // Lower layers of subprocess and os.
    ("_posixsubprocess", All),
    ("_winapi", All),
    // Import or run arbitrary modules and code objects.
    ("importlib", All),
    ("marshal", All),
    ("code", All),
    ("codeop", All),
    // multiprocessing.util.spawnv_passfds starts a program.
    ("multiprocessing", All),
    ("_thread", All),
    // Files and network under their Python 3 names.
    ("io", Only(&["open", "open_code", "FileIO"])),
    ("codecs", Only(&["open"])),
    ("http.client", All),
    ("ftplib", All),
    ("smtplib", All),
    ("telnetlib", All),
    // Other unpicklers and loaders that run pickles or fetch code.
    ("torch", Only(&["load"])),
    ("torch.hub", All),
    ("numpy", Only(&["load"])),
    ("dill", All),
    ("joblib", Only(&["load"])),
    ("pandas", Only(&["read_pickle"])),
    ("shelve", All),
];

/// Python 2 module names and the Python 3 ones an unpickler maps them to
/// (`fix_imports`), so one row covers both spellings.
fn py3_module(module: &str) -> &str {
    match module {
        "__builtin__" | "__builtins__" | "exceptions" => "builtins",
        "cPickle" => "pickle",
        "copy_reg" => "copyreg",
        "urllib2" => "urllib.request",
        "thread" => "_thread",
        other => other,
    }
}

/// Classifies one global.
pub(crate) fn classify(module: &str, name: &str) -> Class {
    let module = py3_module(module);
    if denied(module, name) {
        Class::Denied
    } else if known(module, name) {
        Class::Known
    } else {
        Class::Unknown
    }
}

/// Whether `module.name` resolves to something in [`DENIED`]. An unpickler
/// resolves a dotted name attribute by attribute, so every split of the
/// whole dotted path is checked (`torch` + `serialization.load` is
/// `torch.serialization.load`), and a walk through a dunder attribute
/// (`__globals__`, `__builtins__`) or through an attribute named like a
/// denied module (`collections` + `_sys.modules`) is denied too.
fn denied(module: &str, name: &str) -> bool {
    let path: Vec<&str> = module.split('.').chain(name.split('.')).collect();
    for split in 1..path.len() {
        let (m, n) = (path[..split].join("."), path[split..].join("."));
        let m = py3_module(&m);
        for (row, names) in DENIED {
            let hit = match names {
                All => m == *row,
                Only(list) => m == *row && list.contains(&n.as_str()),
                AllBut(list) => m == *row && !list.contains(&n.as_str()),
            };
            if hit {
                return true;
            }
        }
    }
    let walked = name.split('.').collect::<Vec<_>>();
    walked[..walked.len() - 1].iter().any(|attr| {
        let bare = attr.trim_start_matches('_');
        (attr.starts_with("__") && attr.ends_with("__"))
            || bare == "builtins"
            || DENIED
                .iter()
                .any(|(row, names)| matches!(names, All) && !row.contains('.') && bare == *row)
    })
}

/// Globals the reader interprets, or that build plain values
/// `torch.load(weights_only=True)` also accepts.
fn known(module: &str, name: &str) -> bool {
    let torch = module == "torch" || module.starts_with("torch.");
    match (module, name) {
        ("collections", "OrderedDict" | "defaultdict" | "Counter") => true,
        (
            "builtins",
            "dict" | "list" | "tuple" | "set" | "frozenset" | "bytearray" | "complex" | "object"
            | "int" | "long" | "float" | "str" | "unicode" | "bytes" | "bool",
        ) => true,
        ("_codecs", "encode") | ("copyreg", "_reconstructor") => true,
        ("torch", "Size" | "Tensor" | "device") => true,
        ("torch.nn.parameter", "Parameter") => true,
        ("torch.serialization", "_get_layout") => true,
        ("torch.storage", "_load_from_bytes") => true,
        // Rebuild functions: the reader reads the tensor, or says per
        // tensor why it cannot.
        _ if torch && name.starts_with("_rebuild") => true,
        ("torch", n) if is_torch_dtype(n) || n.starts_with("per_") => true,
        ("torch" | "torch.cuda", n) if n.ends_with("Tensor") => true,
        // TorchScript types: resolved from the archive's own code by
        // torch.jit.load, never imported from Python.
        _ if module == "__torch__" || module.starts_with("__torch__.") => true,
        _ => storage_class(&Global {
            module: module.to_string(),
            name: name.to_string(),
        })
        .0
        .is_some(),
    }
}

/// `torch.<name>` is a dtype (supported ones, and those the reader names
/// as unsupported when a tensor uses them).
fn is_torch_dtype(name: &str) -> bool {
    dtype_by_name(name).is_ok()
        || matches!(
            name,
            "complex32"
                | "chalf"
                | "qint8"
                | "quint8"
                | "qint32"
                | "quint4x2"
                | "quint2x4"
                | "float8_e8m0fnu"
                | "float4_e2m1fn_x2"
                | "bits1x8"
                | "bits2x4"
                | "bits4x2"
                | "bits8"
                | "bits16"
        )
        || name
            .strip_prefix("uint")
            .or_else(|| name.strip_prefix("int"))
            .is_some_and(|bits| matches!(bits, "1" | "2" | "3" | "4" | "5" | "6" | "7"))
}

/// The globals of `seen` of one class, as `module.name`, sorted.
pub(crate) fn names(seen: &Seen, class: Class) -> Vec<String> {
    seen.iter()
        .filter(|(m, n)| classify(m, n) == class)
        .map(|(m, n)| format!("{m}.{n}"))
        .collect()
}

/// Why a file naming `denied` globals is refused.
pub(crate) fn denied_message(denied: &[String]) -> String {
    format!(
        "refused: its pickle names {}, which can run code or touch the system when the file is \
         unpickled (pickle.load, torch.load with weights_only=False). Nothing was run: zTensor \
         never imports or calls what a pickle names",
        list(denied)
    )
}

/// Why a file naming `unknown` globals is refused when strict.
pub(crate) fn strict_message(unknown: &[String]) -> String {
    format!(
        "refused (strict): its pickle names {}, which the reader does not interpret (their \
         objects would be skipped; torch.load with weights_only=True refuses them too). Nothing \
         was run; open it without strict to load its tensors",
        list(unknown)
    )
}

/// Names for a message: the first few, then how many more.
pub(crate) fn list(names: &[String]) -> String {
    const SHOWN: usize = 12;
    if names.len() <= SHOWN {
        names.join(", ")
    } else {
        format!(
            "{} and {} more",
            names[..SHOWN].join(", "),
            names.len() - SHOWN
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("nt", "system"),
            ("os.path", "join"),
            ("subprocess", "Popen"),
            ("builtins", "eval"),
            ("__builtin__", "exec"),
            ("builtins", "__import__"),
            ("builtins", "getattr"),
            ("cPickle", "loads"),
            ("torch", "serialization.load"),
            ("torch", "load"),
            ("collections", "_sys.modules"),
            ("mymod", "Helper.__init__.__globals__"),
            ("asyncio.subprocess", "create_subprocess_shell"),
            ("operator", "attrgetter"),
            ("functools", "partial"),
            ("uuid", "_get_command_stdout"),
        ] {
            assert_eq!(classify(m, n), Class::Denied, "{m}.{n}");
        }
        for (m, n) in [
            ("torch._utils", "_rebuild_tensor_v2"),
            ("torch._utils", "_rebuild_qtensor"),
            ("torch", "FloatStorage"),
            ("torch.storage", "UntypedStorage"),
            ("torch", "bfloat16"),
            ("torch", "complex32"),
            ("torch", "uint3"),
            ("collections", "OrderedDict"),
            ("__builtin__", "long"),
            ("__torch__.torch.nn.modules.linear", "Linear"),
            ("torch", "device"),
        ] {
            assert_eq!(classify(m, n), Class::Known, "{m}.{n}");
        }
        for (m, n) in [
            ("argparse", "Namespace"),
            ("numpy.core.multiarray", "scalar"),
            ("__main__", "Config"),
            ("mymod", "Outer.Inner"),
            ("uuid", "UUID"),
            ("test_models", "Net"),
            ("torch.nn.modules.linear", "Linear"),
            ("builtins", "slice"),
        ] {
            assert_eq!(classify(m, n), Class::Unknown, "{m}.{n}");
        }
    }

    #[test]
    fn names_by_class() {
        let seen: Seen = [
            ("argparse", "Namespace"),
            ("torch", "FloatStorage"),
            ("os", "system"),
        ]
        .map(|(m, n)| (m.to_string(), n.to_string()))
        .into();
        assert_eq!(names(&seen, Class::Unknown), vec!["argparse.Namespace"]);
        assert_eq!(names(&seen, Class::Denied), vec!["os.system"]);
        let many: Vec<String> = (0..20).map(|i| format!("m.c{i}")).collect();
        assert!(list(&many).ends_with("and 8 more"));
    }
}
