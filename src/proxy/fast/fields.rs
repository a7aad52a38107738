//! A request's or response's fields kept in a `HeaderMap`'s order without a `HeaderMap`
//! (docs/performance.md#the-client-side-fast-path): one entry per name in the order names
//! first appear, all of a name's values together, a new name added at the end, a replaced one
//! kept in place, and a removed one's slot taken by the last entry. So what the fast path
//! writes comes out in the order today's path writes it.

/// A field value: the client's bytes or the proxy's, a request id, or a joined list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value<'b> {
    Sent(&'b [u8]),
    Id([u8; 36]),
    Made(Vec<u8>),
}

impl Value<'_> {
    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Value::Sent(v) => v,
            Value::Id(v) => v,
            Value::Made(v) => v,
        }
    }
}

/// A request's fields kept in a `HeaderMap`'s order (see the module doc), in two short lists
/// allocated once: the names (entries), and every value tagged with its entry.
#[derive(Debug)]
pub(super) struct Fields<'b> {
    /// Each name as first sent (compared and written lowercase).
    entries: Vec<&'b [u8]>,
    /// (entry, value), a name's values in the order added.
    values: Vec<(usize, Value<'b>)>,
}

impl<'b> Fields<'b> {
    pub(super) fn with_capacity(room: usize) -> Self {
        Fields {
            entries: Vec::with_capacity(room),
            values: Vec::with_capacity(room),
        }
    }

    pub(super) fn position(&self, name: &[u8]) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.eq_ignore_ascii_case(name))
    }

    /// Each name, as first sent.
    pub(super) fn names(&self) -> impl Iterator<Item = &'b [u8]> + '_ {
        self.entries.iter().copied()
    }

    pub(super) fn contains(&self, name: &[u8]) -> bool {
        self.position(name).is_some()
    }

    pub(super) fn values<'s>(&'s self, name: &[u8]) -> impl Iterator<Item = &'s Value<'b>> + 's {
        let entry = self.position(name);
        self.values
            .iter()
            .filter(move |(e, _)| Some(*e) == entry)
            .map(|(_, v)| v)
    }

    pub(super) fn append(&mut self, name: &'b [u8], value: Value<'b>) {
        let entry = self.position(name).unwrap_or_else(|| {
            self.entries.push(name);
            self.entries.len() - 1
        });
        self.values.push((entry, value));
    }

    /// Replace every value of `name` in place, or add it at the end.
    pub(super) fn insert(&mut self, name: &'b [u8], value: Value<'b>) {
        match self.position(name) {
            Some(entry) => {
                self.values.retain(|(e, _)| *e != entry);
                self.values.push((entry, value));
            }
            None => self.append(name, value),
        }
    }

    /// Remove `name`; the last entry takes its place.
    pub(super) fn remove(&mut self, name: &[u8]) {
        let Some(entry) = self.position(name) else {
            return;
        };
        let last = self.entries.len() - 1;
        self.entries.swap_remove(entry);
        self.values.retain(|(e, _)| *e != entry);
        for (e, _) in &mut self.values {
            if *e == last {
                *e = entry;
            }
        }
    }

    /// The first value of `name`.
    pub(super) fn first(&self, name: &[u8]) -> Option<&Value<'b>> {
        self.values(name).next()
    }

    /// Put the values in output order: by entry, a name's values in the order added (a
    /// stable sort of a short list that is nearly always in order already).
    pub(super) fn settle(&mut self) {
        self.values.sort_by_key(|(e, _)| *e);
    }

    /// Each field in order, once [`Fields::settle`]d: entries in order, each with its values in
    /// order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&'b [u8], &Value<'b>)> + '_ {
        self.values
            .iter()
            .map(|(e, v)| (self.entries.get(*e).copied().unwrap_or_default(), v))
    }

    /// Write every field as a head line, name lowercased.
    pub(super) fn write(&mut self, out: &mut Vec<u8>) {
        self.settle();
        for (name, value) in self.iter() {
            let at = out.len();
            out.extend_from_slice(name);
            if let Some(written) = out.get_mut(at..) {
                written.make_ascii_lowercase();
            }
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}
