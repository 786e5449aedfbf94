//! Citrix vendor strings: `;LT=SYS;GP=96;CL=ENT,ADV;SA=0;ODP=0;DUP_GROUP=HV`.
//!
//! Fields are separated by `;` (a leading or trailing `;` is optional, empty
//! fields are ignored). Keys are case-insensitive. `LT`, `GP`, `CL`, `SA`,
//! `ODP` and `DUP_GROUP` are typed; every other field is kept in order, a
//! field without `=` as `(field, "")`. Other vendors put free text here
//! (`"2ba5a b9253 ..."`); that simply lands in `other`. A typed field with a
//! value that does not parse is an error, since it changes how licenses count.

use super::model::{DupGroup, VendorString};

/// A typed vendor-string field whose value is wrong. `Display` completes
/// `bad VENDOR_STRING field ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}={value:?} ({expected})")]
pub(crate) struct VendorStringError {
    /// The key as written.
    pub(crate) key: String,
    /// The value as written.
    pub(crate) value: String,
    /// What the value should look like.
    pub(crate) expected: &'static str,
}

/// Parses a vendor string (the text between the quotes).
pub(crate) fn parse_vendor_string(raw: &str) -> Result<VendorString, VendorStringError> {
    let mut vs = VendorString {
        raw: raw.to_string(),
        ..VendorString::default()
    };
    for field in raw.split(';').map(str::trim).filter(|f| !f.is_empty()) {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        let (key, value) = (key.trim(), value.trim());
        let bad = |expected| VendorStringError {
            key: key.to_string(),
            value: value.to_string(),
            expected,
        };
        match key.to_ascii_uppercase().as_str() {
            "LT" => vs.license_type = Some(value.to_string()),
            "GP" => {
                vs.grace_hours = Some(value.parse().map_err(|_| bad("expected whole hours"))?);
            }
            "CL" => {
                vs.components = value
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "SA" => vs.subscription = Some(value.to_string()),
            "ODP" => {
                vs.overdraft_percent = Some(
                    value
                        .parse()
                        .map_err(|_| bad("expected a whole percentage"))?,
                );
            }
            "DUP_GROUP" => {
                vs.dup_group = Some(
                    DupGroup::parse(value)
                        .ok_or_else(|| bad("expected NONE, SITE or letters from U, H, D, V"))?,
                );
            }
            _ => vs.other.push((key.to_string(), value.to_string())),
        }
    }
    Ok(vs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_vendor_string() {
        let vs = parse_vendor_string(";LT=SYS;GP=96;SA=0;DUP_GROUP=HV").unwrap();
        assert_eq!(vs.raw, ";LT=SYS;GP=96;SA=0;DUP_GROUP=HV");
        assert_eq!(vs.license_type.as_deref(), Some("SYS"));
        assert!(vs.is_startup());
        assert_eq!(vs.grace_hours, Some(96));
        assert_eq!(vs.subscription.as_deref(), Some("0"));
        assert_eq!(vs.dup_group, DupGroup::parse("HV"));
        assert!(vs.components.is_empty());
        assert_eq!(vs.overdraft_percent, None);
        assert!(vs.other.is_empty());
    }

    #[test]
    fn eval_vendor_string_keeps_unknown_fields_in_order() {
        let vs = parse_vendor_string(
            ";LT=Eval;GP=720;CL=ENT,ADV,STD,AST;SA=0;ODP=0;AP=ADMIN/LOGON/-84D:NONADMIN/LOGON/-28D",
        )
        .unwrap();
        assert_eq!(vs.license_type.as_deref(), Some("Eval"));
        assert!(!vs.is_startup());
        assert_eq!(vs.grace_hours, Some(720));
        assert_eq!(vs.components, ["ENT", "ADV", "STD", "AST"]);
        assert_eq!(vs.overdraft_percent, Some(0));
        assert_eq!(vs.dup_group, None);
        assert_eq!(
            vs.other,
            [(
                "AP".to_string(),
                "ADMIN/LOGON/-84D:NONADMIN/LOGON/-28D".to_string()
            )]
        );
    }

    #[test]
    fn leading_semicolon_optional_keys_any_case_bare_fields_kept() {
        let vs = parse_vendor_string("lt=Retail; gp=24 ;;odp=10;FLAG;").unwrap();
        assert_eq!(vs.license_type.as_deref(), Some("Retail"));
        assert_eq!(vs.grace_hours, Some(24));
        assert_eq!(vs.overdraft_percent, Some(10));
        assert_eq!(vs.other, [("FLAG".to_string(), String::new())]);
    }

    #[test]
    fn free_text_from_other_vendors_is_kept() {
        let vs = parse_vendor_string("2ba5a b9253 3611c").unwrap();
        assert_eq!(vs.other, [("2ba5a b9253 3611c".to_string(), String::new())]);
        assert_eq!(vs.license_type, None);
    }

    #[test]
    fn bad_typed_fields_are_errors() {
        let e = parse_vendor_string(";LT=SYS;GP=lots").unwrap_err();
        assert_eq!(e.to_string(), "GP=\"lots\" (expected whole hours)");
        assert!(parse_vendor_string("ODP=-5").is_err());
        assert!(parse_vendor_string("DUP_GROUP=XYZ").is_err());
    }
}
