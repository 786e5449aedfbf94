//! What the sections and keys of the cache file mean: [`Cache`] to text
//! and back. The layout is seed 001's (`[LSD]`, `[PLD_POOL_NODE_n]`,
//! `[PLD_POOL_LIC_NODE_n_m]`); every key is described in docs/client.md
//! ("Offline cache").

use super::ini::{self, decimal_u32, decimal_u64, Entry, Fault, Section, SectionText};
use super::{filetime_from_unix_ms, unix_ms_from_filetime, Cache};
use crate::picture::PoolTerms;

/// `Version=` of `[LSD]`: the cache format. A reader refuses any other.
pub const FORMAT_VERSION: u32 = 1;

/// `LicModel=` of `[LSD]`: 1 = concurrent (floating) licenses, seed 001's
/// value and the only model tally has.
pub const LIC_MODEL_CONCURRENT: u32 = 1;

/// `NumLic=` of an uncounted pool.
pub const UNCOUNTED: &str = "uncounted";

impl Cache {
    /// The file's text. Pools of one feature share a `[PLD_POOL_NODE_n]`
    /// (features in order of first appearance, pools in their order).
    pub fn to_text(&self) -> String {
        let features = self.features();
        let mut out = String::new();
        SectionText::new("LSD")
            .line("Version", FORMAT_VERSION)
            .line("LicModel", LIC_MODEL_CONCURRENT)
            .line("LSName", &self.server)
            .line("LSPort", self.port)
            .line("ProdName", &self.prod_name)
            .line("ProdFeatName", &self.prod_feat_name)
            .line("Stamp", &self.stamp)
            .line("LastContact", self.last_contact_ms)
            .line_after_crc("SubSectionCount", features.len())
            .write_to(&mut out);
        for (n, (feature, pools)) in features.iter().enumerate() {
            SectionText::new(&format!("PLD_POOL_NODE_{n}"))
                .line("PLD", feature)
                .line("HasMaxLicenseCount", 0)
                .line_after_crc("SubSectionCount", pools.len())
                .write_to(&mut out);
            for (m, pool) in pools.iter().enumerate() {
                pool_section(n, m, pool).write_to(&mut out);
            }
        }
        out
    }

    /// The pools grouped by feature: features in order of first
    /// appearance, each with its pools in order.
    pub fn features(&self) -> Vec<(&str, Vec<&PoolTerms>)> {
        let mut out: Vec<(&str, Vec<&PoolTerms>)> = Vec::new();
        for pool in &self.pools {
            match out.iter_mut().find(|(f, _)| *f == pool.feature) {
                Some((_, pools)) => pools.push(pool),
                None => out.push((&pool.feature, vec![pool])),
            }
        }
        out
    }
}

/// `[PLD_POOL_LIC_NODE_n_m]`.
fn pool_section(n: usize, m: usize, p: &PoolTerms) -> SectionText {
    let mut s = SectionText::new(&format!("PLD_POOL_LIC_NODE_{n}_{m}"));
    match p.total {
        Some(total) => s.line("NumLic", total),
        None => s.line("NumLic", UNCOUNTED),
    };
    s.line("ConnLimit", 0)
        .line("GracePeriod", crate::grace::grace_hours(p))
        .line(
            "LicExpTime",
            p.expiry_ms.and_then(filetime_from_unix_ms).unwrap_or(0),
        )
        .line("LeaseExpTime", 0)
        .line("VendorStr", &p.vendor_string);
    if !p.cl.is_empty() {
        s.line("CompList", p.cl.join(","));
    }
    s.line("SAExpDate", &p.version)
        .line("Vendor", &p.vendor)
        .line("ExpDate", &p.expiry);
    let optional = [("StartDate", &p.start), ("LicType", &p.lt), ("SA", &p.sa)];
    for (key, value) in optional {
        if let Some(v) = value {
            s.line(key, v);
        }
    }
    if let Some(odp) = p.odp {
        s.line("ODP", odp);
    }
    s.line("Overdraft", p.overdraft);
    if let Some(d) = &p.dup_group {
        s.line("DupGroup", d);
    }
    s
}

/// Reads the file's bytes (see [`super::ini`] for the line rules).
pub(crate) fn decode(bytes: &[u8]) -> Result<Cache, Fault> {
    let sections = ini::sections(bytes, "LSD")?;
    let mut next = Sections {
        list: &sections,
        at: 0,
    };
    let mut lsd = Fields::new(next.expect("LSD", "the file")?);
    lsd.exact("Version", FORMAT_VERSION)?;
    lsd.exact("LicModel", LIC_MODEL_CONCURRENT)?;
    let server = lsd.text("LSName")?.to_string();
    let port = lsd.number("LSPort", |v| {
        v.parse::<u16>().ok().filter(|_| decimal_u32(v).is_some())
    })?;
    let prod_name = lsd.text("ProdName")?.to_string();
    let prod_feat_name = lsd.text("ProdFeatName")?.to_string();
    let stamp = lsd.text("Stamp")?.to_string();
    let last_contact_ms = lsd.number("LastContact", decimal_u64)?;
    let nodes = lsd.number("SubSectionCount", decimal_u32)?;
    lsd.done()?;
    let mut pools = Vec::new();
    let mut seen: Vec<(&str, String)> = Vec::new();
    for n in 0..nodes {
        let name = format!("PLD_POOL_NODE_{n}");
        let mut node = Fields::new(next.expect(&name, &format!("[LSD] SubSectionCount={nodes}"))?);
        let pld = node.required("PLD")?;
        if let Some((_, other)) = seen.iter().find(|(f, _)| *f == pld.value) {
            return Err(node.fault(&pld, format!("feature {} is also in [{other}]", pld.value)));
        }
        seen.push((pld.value, name.clone()));
        node.exact("HasMaxLicenseCount", 0)?;
        let count = node.number("SubSectionCount", decimal_u32)?;
        if count == 0 {
            let at = node.section.last_line;
            return Err(Fault::new(
                &name,
                at,
                "SubSectionCount=0: a feature without pools",
            ));
        }
        node.done()?;
        for m in 0..count {
            let section = next.expect(
                &format!("PLD_POOL_LIC_NODE_{n}_{m}"),
                &format!("[{name}] SubSectionCount={count}"),
            )?;
            pools.push(decode_pool(pld.value, Fields::new(section))?);
        }
    }
    if let Some(extra) = sections.get(next.at) {
        return Err(Fault::new(
            extra.name,
            extra.line,
            "a section more than the SubSectionCounts say",
        ));
    }
    Ok(Cache {
        prod_name,
        prod_feat_name,
        server,
        port,
        stamp,
        last_contact_ms,
        pools,
    })
}

/// `[PLD_POOL_LIC_NODE_n_m]` of `feature`.
fn decode_pool(feature: &str, mut f: Fields<'_, '_>) -> Result<PoolTerms, Fault> {
    let num = f.required("NumLic")?;
    let total = match num.value {
        UNCOUNTED => None,
        v => Some(decimal_u32(v).ok_or_else(|| {
            f.fault(
                &num,
                format!("NumLic {v:?} is not a count nor {UNCOUNTED:?}"),
            )
        })?),
    };
    f.exact("ConnLimit", 0)?;
    let gp_hours = Some(f.number("GracePeriod", decimal_u32)?);
    let exp = f.required("LicExpTime")?;
    let ticks = decimal_u64(exp.value)
        .ok_or_else(|| f.fault(&exp, format!("LicExpTime {:?} is not a number", exp.value)))?;
    let expiry_ms = match ticks {
        0 => None,
        t => Some(unix_ms_from_filetime(t).map_err(|why| f.fault(&exp, why))?),
    };
    f.exact("LeaseExpTime", 0)?;
    let vendor_string = f.text("VendorStr")?.to_string();
    let cl = match f.optional("CompList") {
        None => Vec::new(),
        Some(e) => {
            let cl: Vec<String> = e.value.split(',').map(str::to_string).collect();
            if cl.iter().any(String::is_empty) {
                return Err(f.fault(&e, "CompList has an empty component"));
            }
            cl
        }
    };
    let version = f.text("SAExpDate")?.to_string();
    let vendor = f.text("Vendor")?.to_string();
    let expiry = f.text("ExpDate")?.to_string();
    let start = f.optional("StartDate").map(|e| e.value.to_string());
    let lt = f.optional("LicType").map(|e| e.value.to_string());
    let sa = f.optional("SA").map(|e| e.value.to_string());
    let odp = match f.optional("ODP") {
        None => None,
        Some(e) => Some(decimal_u32(e.value).ok_or_else(|| f.fault(&e, "ODP is not a number"))?),
    };
    let overdraft = f.number("Overdraft", decimal_u32)?;
    let dup_group = f.optional("DupGroup").map(|e| e.value.to_string());
    f.done()?;
    Ok(PoolTerms {
        feature: feature.to_string(),
        vendor,
        version,
        total,
        expiry,
        expiry_ms,
        start,
        lt,
        gp_hours,
        cl,
        sa,
        odp,
        overdraft,
        dup_group,
        vendor_string,
    })
}

/// The sections in order, each expected by name.
struct Sections<'s, 'a> {
    list: &'s [Section<'a>],
    at: usize,
}

impl<'s, 'a> Sections<'s, 'a> {
    /// The next section, which must be `[name]`; `because` says why it is
    /// expected (for the message when it is missing).
    fn expect(&mut self, name: &str, because: &str) -> Result<&'s Section<'a>, Fault> {
        let Some(s) = self.list.get(self.at) else {
            let end = self.list.last().map_or(1, |s| s.last_line + 1);
            return Err(Fault::new(
                name,
                end,
                format!("section missing: the file ends, but {because} says it follows"),
            ));
        };
        if s.name != name {
            return Err(Fault::new(
                s.name,
                s.line,
                format!("expected [{name}] here"),
            ));
        }
        self.at += 1;
        Ok(s)
    }
}

/// The keys of one section, each taken at most once; [`Fields::done`]
/// refuses the ones nobody took.
struct Fields<'s, 'a> {
    section: &'s Section<'a>,
    taken: Vec<bool>,
}

impl<'s, 'a> Fields<'s, 'a> {
    fn new(section: &'s Section<'a>) -> Self {
        Fields {
            section,
            taken: vec![false; section.entries.len()],
        }
    }

    fn fault(&self, e: &Entry<'_>, what: impl Into<String>) -> Fault {
        Fault::new(self.section.name, e.line, what)
    }

    fn optional(&mut self, key: &str) -> Option<Entry<'a>> {
        let i = self.section.entries.iter().position(|e| e.key == key)?;
        self.taken[i] = true;
        Some(self.section.entries[i])
    }

    fn required(&mut self, key: &str) -> Result<Entry<'a>, Fault> {
        self.optional(key).ok_or_else(|| {
            Fault::new(
                self.section.name,
                self.section.line,
                format!("{key}= missing from the section"),
            )
        })
    }

    fn text(&mut self, key: &str) -> Result<&'a str, Fault> {
        self.required(key).map(|e| e.value)
    }

    fn number<T>(&mut self, key: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, Fault> {
        let e = self.required(key)?;
        parse(e.value).ok_or_else(|| self.fault(&e, format!("{key} {:?} is not a number", e.value)))
    }

    fn exact(&mut self, key: &str, want: u32) -> Result<(), Fault> {
        let e = self.required(key)?;
        if decimal_u32(e.value) == Some(want) {
            Ok(())
        } else {
            Err(self.fault(&e, format!("{key}={} (only {want} is known)", e.value)))
        }
    }

    fn done(&self) -> Result<(), Fault> {
        match self
            .section
            .entries
            .iter()
            .zip(&self.taken)
            .find(|(_, t)| !**t)
        {
            Some((e, _)) => Err(self.fault(e, format!("unknown key {}", e.key))),
            None => Ok(()),
        }
    }
}
