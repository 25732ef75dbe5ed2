//! A request's query parameters as HubSpot reads them: a list parameter (`properties`,
//! `associations`, ...) may come comma-separated, repeated (`properties=a&properties=b`,
//! what OpenAPI-generated clients such as hubspot-api-client send), or both.

/// The query pairs in the order they came.
#[derive(Debug, Default)]
pub(super) struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, repeated or comma-separated; `None` when it is absent.
    pub fn list(&self, key: &str) -> Option<Vec<String>> {
        let mut found = false;
        let mut out = Vec::new();
        for (_, v) in self.0.iter().filter(|(k, _)| k == key) {
            found = true;
            out.extend(v.split(',').filter(|x| !x.is_empty()).map(str::to_owned));
        }
        found.then_some(out)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, String)> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn lists_come_repeated_or_comma_separated() {
        let q = p(&[
            ("properties", "email"),
            ("limit", "2"),
            ("properties", "firstname,phone"),
        ]);
        assert_eq!(
            q.list("properties").unwrap(),
            ["email", "firstname", "phone"]
        );
        assert_eq!(q.get("limit"), Some("2"));
        assert!(q.list("associations").is_none());
        assert_eq!(p(&[("properties", "")]).list("properties"), Some(vec![]));
    }
}
