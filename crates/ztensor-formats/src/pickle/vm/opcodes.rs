//! The pickle opcodes of protocols 0 to 5, named as in CPython's
//! `pickle.py`/`pickletools`.

macro_rules! opcodes {
    ($($(#[$doc:meta])* $variant:ident = $byte:literal, $name:literal;)*) => {
        /// One pickle opcode.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub(crate) enum Op {
            $($(#[$doc])* $variant = $byte,)*
        }

        impl TryFrom<u8> for Op {
            type Error = String;

            fn try_from(byte: u8) -> Result<Op, String> {
                match byte {
                    $($byte => Ok(Op::$variant),)*
                    other => Err(format!("unknown opcode 0x{other:02x}")),
                }
            }
        }

        impl Op {
            /// The opcode's name in the pickle protocol (`"STACK_GLOBAL"`).
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Op::$variant => $name,)*
                }
            }
        }
    };
}

opcodes! {
    // ---- protocol 0 (text arguments end with '\n')
    /// Pushes a mark: the start of a variable-length group of values.
    Mark = b'(', "MARK";
    /// Ends the pickle: its value is the top of the stack.
    Stop = b'.', "STOP";
    /// Discards the top value (or the topmost mark when the stack is empty).
    Pop = b'0', "POP";
    /// Discards everything down to the topmost mark, and the mark.
    PopMark = b'1', "POP_MARK";
    /// Pushes the top value again.
    Dup = b'2', "DUP";
    /// A float in decimal text.
    Float = b'F', "FLOAT";
    /// An integer (or `00`/`01` for a bool) in decimal text.
    Int = b'I', "INT";
    /// An integer in decimal text, optionally ending with `L`.
    Long = b'L', "LONG";
    /// A `None`.
    None = b'N', "NONE";
    /// Calls `persistent_load` on a text persistent id.
    PersId = b'P', "PERSID";
    /// `callable(*args)`.
    Reduce = b'R', "REDUCE";
    /// A byte string as a quoted Python literal.
    String = b'S', "STRING";
    /// A `str` in `raw-unicode-escape` text.
    Unicode = b'V', "UNICODE";
    /// Appends the top value to the list below it.
    Append = b'a', "APPEND";
    /// Sets the state of the object below the top value.
    Build = b'b', "BUILD";
    /// Pushes `module.name` (two text lines).
    Global = b'c', "GLOBAL";
    /// A dict of the key/value pairs above the topmost mark.
    Dict = b'd', "DICT";
    /// Appends the values above the topmost mark to the list below it.
    Appends = b'e', "APPENDS";
    /// Pushes a memo entry (text key).
    Get = b'g', "GET";
    /// Builds an instance of `module.name` from the values above the mark.
    Inst = b'i', "INST";
    /// A list of the values above the topmost mark.
    List = b'l', "LIST";
    /// Builds an instance of the first value above the mark from the rest.
    Obj = b'o', "OBJ";
    /// Stores the top value in the memo (text key).
    Put = b'p', "PUT";
    /// Sets one key/value pair of the dict below them.
    SetItem = b's', "SETITEM";
    /// A tuple of the values above the topmost mark.
    Tuple = b't', "TUPLE";
    /// Sets the key/value pairs above the topmost mark in the dict below it.
    SetItems = b'u', "SETITEMS";

    // ---- protocol 1 (binary arguments, little-endian)
    /// A 4-byte signed integer.
    BinInt = b'J', "BININT";
    /// A 1-byte unsigned integer.
    BinInt1 = b'K', "BININT1";
    /// A 2-byte unsigned integer.
    BinInt2 = b'M', "BININT2";
    /// A big-endian 8-byte float.
    BinFloat = b'G', "BINFLOAT";
    /// Calls `persistent_load` on the top value.
    BinPersId = b'Q', "BINPERSID";
    /// A byte string of a 4-byte signed length (a `str` to Python 3).
    BinString = b'T', "BINSTRING";
    /// A byte string of a 1-byte length (a `str` to Python 3).
    ShortBinString = b'U', "SHORT_BINSTRING";
    /// A UTF-8 `str` of a 4-byte length.
    BinUnicode = b'X', "BINUNICODE";
    /// An empty dict.
    EmptyDict = b'}', "EMPTY_DICT";
    /// An empty list.
    EmptyList = b']', "EMPTY_LIST";
    /// An empty tuple.
    EmptyTuple = b')', "EMPTY_TUPLE";
    /// Pushes a memo entry (1-byte key).
    BinGet = b'h', "BINGET";
    /// Pushes a memo entry (4-byte key).
    LongBinGet = b'j', "LONG_BINGET";
    /// Stores the top value in the memo (1-byte key).
    BinPut = b'q', "BINPUT";
    /// Stores the top value in the memo (4-byte key).
    LongBinPut = b'r', "LONG_BINPUT";

    // ---- protocol 2
    /// The protocol version (1 byte).
    Proto = 0x80, "PROTO";
    /// `cls.__new__(cls, *args)`.
    NewObj = 0x81, "NEWOBJ";
    /// A `copyreg` extension code (1 byte).
    Ext1 = 0x82, "EXT1";
    /// A `copyreg` extension code (2 bytes).
    Ext2 = 0x83, "EXT2";
    /// A `copyreg` extension code (4 bytes).
    Ext4 = 0x84, "EXT4";
    /// A tuple of the top value.
    Tuple1 = 0x85, "TUPLE1";
    /// A tuple of the top two values.
    Tuple2 = 0x86, "TUPLE2";
    /// A tuple of the top three values.
    Tuple3 = 0x87, "TUPLE3";
    /// `True`.
    NewTrue = 0x88, "NEWTRUE";
    /// `False`.
    NewFalse = 0x89, "NEWFALSE";
    /// A two's complement integer of a 1-byte length.
    Long1 = 0x8a, "LONG1";
    /// A two's complement integer of a 4-byte signed length.
    Long4 = 0x8b, "LONG4";

    // ---- protocol 3
    /// A byte string of a 4-byte length.
    BinBytes = b'B', "BINBYTES";
    /// A byte string of a 1-byte length.
    ShortBinBytes = b'C', "SHORT_BINBYTES";

    // ---- protocol 4
    /// A UTF-8 `str` of a 1-byte length.
    ShortBinUnicode = 0x8c, "SHORT_BINUNICODE";
    /// A UTF-8 `str` of an 8-byte length.
    BinUnicode8 = 0x8d, "BINUNICODE8";
    /// A byte string of an 8-byte length.
    BinBytes8 = 0x8e, "BINBYTES8";
    /// An empty set.
    EmptySet = 0x8f, "EMPTY_SET";
    /// Adds the values above the topmost mark to the set below it.
    AddItems = 0x90, "ADDITEMS";
    /// A frozenset of the values above the topmost mark.
    FrozenSet = 0x91, "FROZENSET";
    /// `cls.__new__(cls, *args, **kwargs)`.
    NewObjEx = 0x92, "NEWOBJ_EX";
    /// Pushes `module.name` from the two strings on top of the stack.
    StackGlobal = 0x93, "STACK_GLOBAL";
    /// Stores the top value in the memo under the memo's size.
    Memoize = 0x94, "MEMOIZE";
    /// The length of the next frame (8 bytes): a read-ahead hint.
    Frame = 0x95, "FRAME";

    // ---- protocol 5
    /// A bytearray of an 8-byte length.
    ByteArray8 = 0x96, "BYTEARRAY8";
    /// An out-of-band buffer.
    NextBuffer = 0x97, "NEXT_BUFFER";
    /// Makes the buffer on top of the stack read-only.
    ReadOnlyBuffer = 0x98, "READONLY_BUFFER";
}
