//! Object-header message types and flags of the HDF5 file format (section
//! IV.A.2 of its specification), one list for every walk of the image.

/// Padding (the NIL message).
pub(super) const NIL: u8 = 0x00;
/// Dataspace: the dimensions.
pub(super) const DATASPACE: u8 = 0x01;
/// Link info (link-message groups).
pub(super) const LINK_INFO: u8 = 0x02;
/// Datatype: the element type.
pub(super) const DATATYPE: u8 = 0x03;
/// The old-style fill value.
pub(super) const FILL_OLD: u8 = 0x04;
/// Fill value.
pub(super) const FILL: u8 = 0x05;
/// One link of a link-message group.
pub(super) const LINK: u8 = 0x06;
/// Data layout: where the elements are.
pub(super) const LAYOUT: u8 = 0x08;
/// Group info (link-message groups).
pub(super) const GROUP_INFO: u8 = 0x0A;
/// One attribute.
pub(super) const ATTRIBUTE: u8 = 0x0C;
/// Object comment.
pub(super) const COMMENT: u8 = 0x0D;
/// The old-style modification time.
pub(super) const MTIME_OLD: u8 = 0x0E;
/// Continuation: more messages in another block.
pub(super) const CONTINUATION: u8 = 0x10;
/// Symbol table (symbol-table groups).
pub(super) const SYMBOL_TABLE: u8 = 0x11;
/// Modification time.
pub(super) const MTIME: u8 = 0x12;
/// Attribute info (attributes in dense storage).
pub(super) const ATTRIBUTE_INFO: u8 = 0x15;

/// The message flag of a message stored elsewhere (shared).
pub(super) const SHARED: u8 = 0x02;
