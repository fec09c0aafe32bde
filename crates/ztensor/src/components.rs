//! [`Components`]: the named components of one tensor, in name order.
//!
//! A map with the methods of `BTreeMap<String, Component>` that code uses,
//! kept as a sorted `Vec`. Nearly every tensor has one component (`data`)
//! and none has more than a handful, where a `BTreeMap` allocates a node of
//! eleven key and value slots (about 1.5 KB) even for one: 30 MB held, and
//! as many page faults, for a file of 20,000 small tensors.

use std::ops::Index;

use crate::model::Component;

/// A tensor's components by name, iterated in name order (byte-wise).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Components(Vec<(String, Component)>);

/// Iterator over `(name, component)` pairs, in name order.
pub type Iter<'a> = std::iter::Map<
    std::slice::Iter<'a, (String, Component)>,
    fn(&'a (String, Component)) -> (&'a String, &'a Component),
>;

impl Components {
    /// No components.
    pub fn new() -> Components {
        Components(Vec::new())
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    /// The component `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&Component> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    /// The component `name`, mutably, if there is one.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Component> {
        self.find(name).ok().map(|i| &mut self.0[i].1)
    }

    /// Whether there is a component `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets the component `name`, returning the one it replaces.
    pub fn insert(&mut self, name: String, component: Component) -> Option<Component> {
        match self.find(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, component)),
            Err(i) => {
                self.0.insert(i, (name, component));
                None
            }
        }
    }

    /// Removes and returns the component `name`.
    pub fn remove(&mut self, name: &str) -> Option<Component> {
        self.find(name).ok().map(|i| self.0.remove(i).1)
    }

    /// How many components there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(name, component)` pairs in name order.
    pub fn iter(&self) -> Iter<'_> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Names in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator + Clone {
        self.0.iter().map(|(k, _)| k)
    }

    /// Components in name order.
    pub fn values(
        &self,
    ) -> impl DoubleEndedIterator<Item = &Component> + ExactSizeIterator + Clone {
        self.0.iter().map(|(_, v)| v)
    }

    /// Components in name order, mutably.
    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut Component> {
        self.0.iter_mut().map(|(_, v)| v)
    }
}

impl Index<&str> for Components {
    type Output = Component;

    /// The component `name`; panics when there is none, as `BTreeMap` does.
    fn index(&self, name: &str) -> &Component {
        self.get(name)
            .unwrap_or_else(|| panic!("no component named {name:?}"))
    }
}

impl FromIterator<(String, Component)> for Components {
    /// Collects pairs; of two with one name, the later wins (as `BTreeMap`).
    fn from_iter<I: IntoIterator<Item = (String, Component)>>(iter: I) -> Self {
        let mut out = Components::new();
        out.extend(iter);
        out
    }
}

impl Extend<(String, Component)> for Components {
    fn extend<I: IntoIterator<Item = (String, Component)>>(&mut self, iter: I) {
        for (name, component) in iter {
            self.insert(name, component);
        }
    }
}

impl<const N: usize> From<[(String, Component); N]> for Components {
    fn from(pairs: [(String, Component); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Components {
    type Item = (&'a String, &'a Component);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for Components {
    type Item = (String, Component);
    type IntoIter = std::vec::IntoIter<(String, Component)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Encoding;
    use crate::DType;

    fn at(offset: u64) -> Component {
        Component {
            dtype: DType::U8,
            logical_type: None,
            offset,
            length: 1,
            encoding: Encoding::Raw,
            digest: None,
        }
    }

    #[test]
    fn behaves_as_a_sorted_map() {
        let mut c: Components = [
            ("values".to_string(), at(1)),
            ("indices".to_string(), at(2)),
        ]
        .into_iter()
        .chain([("values".to_string(), at(3))])
        .collect();
        assert_eq!(c.len(), 2);
        assert_eq!(c.keys().collect::<Vec<_>>(), ["indices", "values"]);
        assert_eq!(c["values"].offset, 3, "the later of two pairs wins");
        assert!(c.get("data").is_none() && !c.contains_key("data"));
        assert_eq!(c.insert("data".into(), at(4)), None);
        assert_eq!(c.insert("data".into(), at(5)).map(|o| o.offset), Some(4));
        let order: Vec<_> = c.iter().map(|(k, v)| (k.as_str(), v.offset)).collect();
        assert_eq!(order, [("data", 5), ("indices", 2), ("values", 3)]);
        assert_eq!(c.remove("indices").map(|o| o.offset), Some(2));
        c.get_mut("data").unwrap().offset = 9;
        assert_eq!(c.values().map(|v| v.offset).collect::<Vec<_>>(), [9, 3]);
    }
}
