//! The Uri-Query of an uplink request (Register, Update, Bootstrap-Request) as `name[=value]`
//! pairs, with the rules both interfaces share: a parameter given twice is refused, a
//! parameter that takes a value needs a non-empty one, a flag takes none. Each interface maps
//! [`QueryError`] into its own error type (and clips the echoed value to its own length).

use steward_coap::message::Request;

/// Why the query is unusable; `value` is the offending value as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryError<'a> {
    NotUtf8,
    Duplicate(&'static str),
    BadValue { name: &'static str, value: &'a str },
}

/// The Uri-Query options as `name[=value]` pairs, in order.
pub(crate) struct Query<'a>(Vec<(&'a str, Option<&'a str>)>);

impl<'a> Query<'a> {
    pub(crate) fn of(request: &'a Request) -> Result<Query<'a>, QueryError<'a>> {
        let raw = request.options.uri_query().ok_or(QueryError::NotUtf8)?;
        Ok(Query(
            raw.into_iter()
                .map(|p| match p.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (p, None),
                })
                .collect(),
        ))
    }

    /// `None` when absent, `Some(value)` when present once; an error when repeated.
    pub(crate) fn single(
        &self,
        name: &'static str,
    ) -> Result<Option<Option<&'a str>>, QueryError<'a>> {
        let mut found = self.0.iter().filter(|(n, _)| *n == name).map(|(_, v)| *v);
        let first = found.next();
        if found.next().is_some() {
            return Err(QueryError::Duplicate(name));
        }
        Ok(first)
    }

    /// A parameter that needs a non-empty value (`ep=`, `b=`, `pct=`, ...).
    pub(crate) fn value(&self, name: &'static str) -> Result<Option<&'a str>, QueryError<'a>> {
        match self.single(name)? {
            None => Ok(None),
            Some(Some(v)) if !v.is_empty() => Ok(Some(v)),
            Some(v) => Err(QueryError::BadValue {
                name,
                value: v.unwrap_or(""),
            }),
        }
    }

    /// A parameter without a value (`Q`).
    pub(crate) fn flag(&self, name: &'static str) -> Result<bool, QueryError<'a>> {
        match self.single(name)? {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(value)) => Err(QueryError::BadValue { name, value }),
        }
    }

    /// The parameters not in `known`, kept for the record.
    pub(crate) fn extra(&self, known: &[&str]) -> Vec<(String, Option<String>)> {
        self.0
            .iter()
            .filter(|(n, _)| !known.contains(n))
            .map(|(n, v)| ((*n).to_owned(), v.map(str::to_owned)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_coap::message::Method;

    #[test]
    fn values_flags_duplicates_and_extras() {
        let request = ["ep=a", "Q", "b=", "x=1", "y", "x=2"]
            .iter()
            .fold(Request::new(Method::Post), |r, q| r.with_query(q));
        let q = Query::of(&request).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(q.value("ep"), Ok(Some("a")));
        assert_eq!(q.value("none"), Ok(None));
        assert_eq!(q.flag("Q"), Ok(true));
        assert_eq!(
            q.flag("ep"),
            Err(QueryError::BadValue {
                name: "ep",
                value: "a"
            })
        );
        assert_eq!(
            q.value("b"),
            Err(QueryError::BadValue {
                name: "b",
                value: ""
            })
        );
        assert_eq!(q.value("x"), Err(QueryError::Duplicate("x")));
        assert_eq!(
            q.extra(&["ep", "Q", "b", "x"]),
            vec![("y".to_owned(), None)]
        );
    }
}
