//! Institution import from the notice's attachment 2 form (职业培训机构信息采集表)
//! saved as UTF-8 CSV: form rows become `register_institution` requests with
//! request ids derived from their content, or per-line refusals; answers
//! become per-line outcomes. Pure: no I/O, tested without a daemon.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::domain::command::check_registration;
use crate::domain::enums::InstitutionType;
use crate::domain::ids::{DistrictCode, InstitutionCode, PersonSecret};
use crate::domain::op::{Answer, Op, Request, SiteSpec, StatsView};
use crate::error::{Error, Reason, Refusal};
use crate::limits::{IMPORT_FILE_BYTES_MAX, IMPORT_ROWS_MAX};

/// A column of the form, in the form's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    Name,
    District,
    Address,
    Phone,
    Code,
    Type,
    AdminName,
    AdminIdNumber,
    Sites,
}

impl Column {
    pub const ALL: [Column; 9] = [
        Column::Name,
        Column::District,
        Column::Address,
        Column::Phone,
        Column::Code,
        Column::Type,
        Column::AdminName,
        Column::AdminIdNumber,
        Column::Sites,
    ];

    /// The column's header on the form.
    pub fn header(self) -> &'static str {
        match self {
            Column::Name => "机构名称",
            Column::District => "行政区划编码",
            Column::Address => "机构地址",
            Column::Phone => "机构电话",
            Column::Code => "机构编码",
            Column::Type => "机构类型",
            Column::AdminName => "机构专员姓名",
            Column::AdminIdNumber => "机构专员身份证号码",
            Column::Sites => "培训机构经纬度",
        }
    }

    /// Other spellings districts use for the same header.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Column::District => &["行政区划代码", "区县编码", "区县代码"],
            Column::AdminIdNumber => &["机构专员身份证号", "机构专员身份证"],
            Column::Sites => &["经纬度", "培训地点经纬度"],
            _ => &[],
        }
    }

    /// 【必填】 on the form; only the type is 【选填】.
    pub fn required(self) -> bool {
        self != Column::Type
    }

    fn matches(self, header: &str) -> bool {
        self.header() == header || self.aliases().contains(&header)
    }
}

/// A header cell without whitespace, line breaks and bracketed notes
/// (`行政区划\n编码【必填】` → `行政区划编码`).
fn normal_header(cell: &str) -> String {
    let mut out = String::new();
    let mut depth = 0u32;
    for c in cell.chars() {
        match c {
            '【' | '（' | '(' | '[' => depth += 1,
            '】' | '）' | ')' | ']' => depth = depth.saturating_sub(1),
            c if c.is_whitespace() || c == '\u{feff}' => {}
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// A cell's value: trimmed, full-width spaces included.
fn clean(cell: &str) -> &str {
    cell.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// One data row of the form and what it became.
#[derive(Clone, Debug, PartialEq)]
pub struct FormRow {
    /// The row's line in the file (the header is line 1).
    pub line: u64,
    /// The institution code, when the row has a valid one.
    pub code: Option<InstitutionCode>,
    pub name: String,
    /// The request to send, or why the row is refused before sending.
    pub checked: Result<Request, Refusal>,
}

/// Reads a form and checks every row. `districts` are the current campaign's
/// district codes (a row naming another is `unknown_district`). Errors are
/// about the whole file (not UTF-8, not CSV, a required column missing, no
/// rows, too large); each row's own problems are in its `checked`.
pub fn read_form(bytes: &[u8], districts: &[DistrictCode]) -> Result<Vec<FormRow>, Error> {
    if bytes.len() > IMPORT_FILE_BYTES_MAX {
        return Err(Error::InvalidInput(format!(
            "the form is larger than {IMPORT_FILE_BYTES_MAX} bytes"
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(header)) => header,
        Some(Err(error)) => return Err(csv_error(error)),
        None => return Err(Error::InvalidInput("the form is empty".into())),
    };
    let mut positions: HashMap<Column, usize> = HashMap::new();
    for (index, cell) in header.iter().enumerate() {
        let cell = normal_header(cell);
        if let Some(column) = Column::ALL.into_iter().find(|c| c.matches(&cell)) {
            if positions.insert(column, index).is_some() {
                return Err(Error::InvalidInput(format!(
                    "the header has the column {} twice",
                    column.header()
                )));
            }
        }
    }
    let missing: Vec<&str> = Column::ALL
        .into_iter()
        .filter(|c| c.required() && !positions.contains_key(c))
        .map(Column::header)
        .collect();
    if !missing.is_empty() {
        return Err(Error::InvalidInput(format!(
            "line 1 is not the attachment 2 header: missing the column(s) {}",
            missing.join(", ")
        )));
    }
    let known: HashSet<DistrictCode> = districts.iter().copied().collect();
    let mut first_line_of: HashMap<InstitutionCode, u64> = HashMap::new();
    let mut rows = Vec::new();
    for record in records {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        let cell = |column: Column| {
            positions
                .get(&column)
                .and_then(|&index| record.get(index))
                .map_or("", clean)
        };
        if record.iter().all(|c| clean(c).is_empty()) {
            continue;
        }
        // The form's second row explains each column (【必填】…): not an institution.
        if record
            .iter()
            .map(clean)
            .find(|c| !c.is_empty())
            .is_some_and(|c| c.starts_with("【必填】") || c.starts_with("【选填】"))
        {
            continue;
        }
        if rows.len() == IMPORT_ROWS_MAX {
            return Err(Error::InvalidInput(format!(
                "the form has more than {IMPORT_ROWS_MAX} rows; split it"
            )));
        }
        let mut row = check_row(line, &cell, &known);
        if let (Ok(_), Some(code)) = (&row.checked, row.code) {
            if let Some(first) = first_line_of.get(&code) {
                row.checked = Err(Refusal::new(
                    Reason::InstitutionExists,
                    format!("机构编码 {code} is also on line {first}"),
                ));
            } else {
                first_line_of.insert(code, line);
            }
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(Error::InvalidInput(
            "the form has no institution rows".into(),
        ));
    }
    Ok(rows)
}

fn csv_error(error: csv::Error) -> Error {
    let line = error.position().map_or(0, |p| p.line());
    match error.kind() {
        csv::ErrorKind::Utf8 { .. } => Error::InvalidInput(format!(
            "line {line} is not UTF-8: save the form as \"CSV UTF-8\""
        )),
        _ => Error::InvalidInput(format!("the form is not valid CSV: {error}")),
    }
}

fn invalid(message: String) -> Refusal {
    Refusal::new(Reason::InvalidRequest, message)
}

/// `lat,lon[,radius_m]` pairs separated by `;` (full-width `；` and `，` too).
fn parse_sites(text: &str) -> Result<Vec<SiteSpec>, Refusal> {
    let text = text.replace('；', ";").replace('，', ",");
    text.split(';')
        .map(str::trim)
        .filter(|site| !site.is_empty())
        .map(|site| {
            let spec = SiteSpec::parse(site)
                .map_err(|e| invalid(format!("培训机构经纬度: {e} (write lat,lon;lat,lon)")))?;
            if !(spec.lat.is_finite() && spec.lon.is_finite()) {
                return Err(invalid(format!(
                    "培训机构经纬度: {site:?} is not a number (write lat,lon;lat,lon)"
                )));
            }
            Ok(spec)
        })
        .collect()
}

/// The request id of a row: `import-` and blake3 of the request without the
/// admin's ID number (request ids are kept in the audit log in clear; ID
/// numbers never are). The same row always gets the same id.
pub fn request_id(op: &Op) -> String {
    let mut content = serde_json::to_value(op).expect("operations serialise");
    if let Some(fields) = content.as_object_mut() {
        fields.remove("admin_id_number");
    }
    let hash = blake3::hash(content.to_string().as_bytes());
    format!("import-{}", &hash.to_hex()[..32])
}

fn check_row<'a>(
    line: u64,
    cell: &dyn Fn(Column) -> &'a str,
    known: &HashSet<DistrictCode>,
) -> FormRow {
    let mut code = None;
    let checked = check_fields(cell, known, &mut code);
    FormRow {
        line,
        code,
        name: cell(Column::Name).to_owned(),
        checked,
    }
}

/// A row's fields in the form's order; `code` is set once the code is valid.
fn check_fields<'a>(
    cell: &dyn Fn(Column) -> &'a str,
    known: &HashSet<DistrictCode>,
    code_read: &mut Option<InstitutionCode>,
) -> Result<Request, Refusal> {
    let missing: Vec<&str> = Column::ALL
        .into_iter()
        .filter(|&c| c.required() && cell(c).is_empty())
        .map(Column::header)
        .collect();
    if !missing.is_empty() {
        return Err(invalid(format!(
            "【必填】 field(s) left empty: {}",
            missing.join(", ")
        )));
    }
    let code: InstitutionCode = cell(Column::Code).parse().map_err(|_| {
        invalid(format!(
            "机构编码 {:?} is not the training system's 7-digit code",
            cell(Column::Code)
        ))
    })?;
    *code_read = Some(code);
    let district: DistrictCode = cell(Column::District)
        .parse()
        .map_err(|why| invalid(format!("行政区划编码: {why}")))?;
    let kind = match cell(Column::Type) {
        "" => InstitutionType::Other,
        name => InstitutionType::from_chinese_name(name).ok_or_else(|| {
            let names: Vec<&str> = InstitutionType::ALL
                .iter()
                .map(|kind| kind.chinese_name())
                .collect();
            invalid(format!(
                "机构类型 {name:?} is not one of {}",
                names.join("、")
            ))
        })?,
    };
    let op = Op::RegisterInstitution {
        code,
        name: cell(Column::Name).to_owned(),
        district,
        address: cell(Column::Address).to_owned(),
        phone: cell(Column::Phone).to_owned(),
        kind,
        admin_name: cell(Column::AdminName).to_owned(),
        admin_id_number: cell(Column::AdminIdNumber).to_owned(),
        sites: parse_sites(cell(Column::Sites))?,
    };
    // The ledger's own field checks; the key made here is thrown away.
    check_registration(&op, &PersonSecret([0; 32])).map_err(|refusal| {
        let message = refusal
            .message
            .replace("admin_id_number", "机构专员身份证号码")
            .replace("admin_name", "机构专员姓名");
        Refusal::new(refusal.reason, message)
    })?;
    if !known.contains(&district) {
        return Err(Refusal::new(
            Reason::UnknownDistrict,
            format!("行政区划编码 {district} is not a district of the current campaign"),
        ));
    }
    Ok(Request {
        id: request_id(&op),
        op,
    })
}

/// The district codes of the current campaign and the institutions already
/// registered, from a `stats` answer (bureau, whole city).
pub fn known(stats: &StatsView) -> (Vec<DistrictCode>, HashSet<InstitutionCode>) {
    (
        stats.districts.iter().map(|d| d.code).collect(),
        stats.institutions.iter().map(|i| i.code).collect(),
    )
}

/// The requests to send: the rows that passed, in file order.
pub fn requests(rows: &[FormRow]) -> Vec<Request> {
    rows.iter()
        .filter_map(|row| row.checked.as_ref().ok().cloned())
        .collect()
}

/// What became of one row.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Registered,
    /// Registered before by this same row (its request id was answered from memory).
    AlreadyPresent,
    Refused(Refusal),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RowOutcome {
    pub line: u64,
    pub code: Option<InstitutionCode>,
    pub name: String,
    pub status: Status,
}

/// Pairs each row with its answer. `answers` are those of `requests(rows)`,
/// in order; `existing` are the codes registered before they were sent. An
/// accepted row whose code already existed was answered from the ledger's
/// memory of the same request id: it is already present, nothing changed.
pub fn outcomes(
    rows: &[FormRow],
    answers: Vec<Answer>,
    existing: &HashSet<InstitutionCode>,
) -> Vec<RowOutcome> {
    let mut answers = answers.into_iter();
    rows.iter()
        .map(|row| {
            let status = match &row.checked {
                Err(refusal) => Status::Refused(refusal.clone()),
                Ok(_) => match answers.next().map(|answer| answer.outcome) {
                    Some(Ok(_)) if row.code.is_some_and(|c| existing.contains(&c)) => {
                        Status::AlreadyPresent
                    }
                    Some(Ok(_)) => Status::Registered,
                    Some(Err(refusal)) if refusal.reason == Reason::InstitutionExists => {
                        Status::Refused(Refusal::new(
                            Reason::InstitutionExists,
                            format!(
                                "{}; its details differ from this row or it was registered otherwise",
                                refusal.message
                            ),
                        ))
                    }
                    Some(Err(refusal)) if refusal.reason == Reason::RequestIdReused => {
                        Status::Refused(Refusal::new(
                            Reason::RequestIdReused,
                            "this row was imported before with another 机构专员身份证号码; \
                             change the admin with `voucherctl institution admin`",
                        ))
                    }
                    Some(Err(refusal)) => Status::Refused(refusal),
                    None => unreachable!("one answer per request sent"),
                },
            };
            RowOutcome {
                line: row.line,
                code: row.code,
                name: row.name.clone(),
                status,
            }
        })
        .collect()
}

impl RowOutcome {
    pub fn is_refused(&self) -> bool {
        matches!(self.status, Status::Refused(_))
    }

    /// One line for people: `line 3: registered 5000001 重庆技工学校`.
    pub fn text(&self) -> String {
        let what = match self.code {
            Some(code) => format!("{code} {}", self.name),
            None => self.name.clone(),
        };
        match &self.status {
            Status::Registered => format!("line {}: registered {what}", self.line),
            Status::AlreadyPresent => format!("line {}: already present {what}", self.line),
            Status::Refused(refusal) => format!(
                "line {}: refused {} ({})",
                self.line, refusal.reason, refusal.message
            ),
        }
    }

    /// One JSON line: `{"line", "code", "name", "status", "reason", "message"}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = json!({
            "line": self.line,
            "code": self.code.map(|c| c.to_string()),
            "name": self.name,
        });
        let fields = value.as_object_mut().expect("an object");
        match &self.status {
            Status::Registered => {
                fields.insert("status".into(), "registered".into());
            }
            Status::AlreadyPresent => {
                fields.insert("status".into(), "already_present".into());
            }
            Status::Refused(refusal) => {
                fields.insert("status".into(), "refused".into());
                fields.insert("reason".into(), refusal.reason.as_str().into());
                fields.insert("message".into(), refusal.message.clone().into());
            }
        }
        value
    }
}

/// `N rows: R registered, P already present, F refused`.
pub fn summary(outcomes: &[RowOutcome]) -> String {
    let count = |f: fn(&Status) -> bool| outcomes.iter().filter(|o| f(&o.status)).count();
    format!(
        "{} rows: {} registered, {} already present, {} refused",
        outcomes.len(),
        count(|s| matches!(s, Status::Registered)),
        count(|s| matches!(s, Status::AlreadyPresent)),
        count(|s| matches!(s, Status::Refused(_))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "机构名称,\"行政区划\n\n编码\",机构地址,机构电话,机构编码,机构类型,机构专员姓名,\"机构专员身份证\n\n号码\",培训机构经纬度\n";

    fn districts() -> Vec<DistrictCode> {
        ["500101", "500103", "LJXQ"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect()
    }

    fn reason(row: &FormRow) -> (&'static str, String) {
        let refusal = row.checked.as_ref().unwrap_err();
        (refusal.reason.as_str(), refusal.message.clone())
    }

    #[test]
    fn headers_are_read_without_notes_and_line_breaks() {
        assert_eq!(normal_header("行政区划\n\n编码"), "行政区划编码");
        assert_eq!(normal_header("\u{feff}机构名称【必填】"), "机构名称");
        assert_eq!(normal_header("机构类型（选填）"), "机构类型");
    }

    #[test]
    fn a_good_row_becomes_a_request_with_a_stable_id() {
        let form = format!(
            "{HEADER}重庆技工学校,500103,重庆市渝中区解放碑1号,023-88126902,5000001,技工院校,刘路,11010519491231002x,\"29.5576,106.5775；29.56,106.55,800\"\n"
        );
        let rows = read_form(form.as_bytes(), &districts()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].line, 6, "the quoted header spans five lines");
        let request = rows[0].checked.as_ref().unwrap();
        let Op::RegisterInstitution { kind, sites, .. } = &request.op else {
            panic!("{request:?}")
        };
        assert_eq!(*kind, InstitutionType::TechnicianCollege);
        assert_eq!(sites.len(), 2);
        assert_eq!(sites[1].radius_m, Some(800));
        let again = read_form(form.as_bytes(), &districts()).unwrap();
        assert_eq!(again[0].checked.as_ref().unwrap().id, request.id);
        assert!(request.id.starts_with("import-") && request.id.len() <= 64);
        assert!(!request.id.contains("11010519491231002"));
    }

    #[test]
    fn hint_rows_blank_rows_and_an_empty_type_are_accepted() {
        let form = format!(
            "{HEADER}【必填】全称,【必填】填写区县编码,【必填】,【必填】,【必填】,【选填】,【必填】,【必填】,【必填】\n,,,,,,,,\n某某培训学校,LJXQ,重庆市两江新区金渝大道1号,13800000000,5000002,,王芳,11010519491231002X,\"29.65,106.55\"\n"
        );
        let rows = read_form(form.as_bytes(), &districts()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].line, 8);
        let Op::RegisterInstitution { kind, .. } = &rows[0].checked.as_ref().unwrap().op else {
            unreachable!()
        };
        assert_eq!(*kind, InstitutionType::Other);
    }

    #[test]
    fn each_bad_row_names_its_line_and_problem() {
        let good_id = "11010519491231002X";
        let bad_id = "110105194912310021";
        let rows = [
            format!("缺电话,500101,地址,,5000011,技工院校,刘路,{good_id},\"29.56,106.55\""),
            format!("短编码,500101,地址,023-1,50001,技工院校,刘路,{good_id},\"29.56,106.55\""),
            format!("外区县,500199,地址,023-1,5000012,技工院校,刘路,{good_id},\"29.56,106.55\""),
            format!("北京,500101,地址,023-1,5000013,技工院校,刘路,{good_id},\"39.9,116.4\""),
            format!("坏身份证,500101,地址,023-1,5000014,技工院校,刘路,{bad_id},\"29.56,106.55\""),
            format!("坏类型,500101,地址,023-1,5000015,大学,刘路,{good_id},\"29.56,106.55\""),
            format!("坏坐标,500101,地址,023-1,5000016,技工院校,刘路,{good_id},29.56"),
            format!("重复,500101,地址,023-1,5000017,技工院校,刘路,{good_id},\"29.56,106.55\""),
            format!("重复,500101,地址,023-1,5000017,技工院校,刘路,{good_id},\"29.56,106.55\""),
        ];
        let form = format!("机构名称,行政区划编码,机构地址,机构电话,机构编码,机构类型,机构专员姓名,机构专员身份证号码,培训机构经纬度\n{}\n", rows.join("\n"));
        let rows = read_form(form.as_bytes(), &districts()).unwrap();
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, (2..=10).collect::<Vec<u64>>());
        let (code, message) = reason(&rows[0]);
        assert_eq!(code, "invalid_request");
        assert!(
            message.contains("【必填】") && message.contains("机构电话"),
            "{message}"
        );
        let (code, message) = reason(&rows[1]);
        assert_eq!(code, "invalid_request");
        assert!(message.contains("7-digit"), "{message}");
        assert_eq!(reason(&rows[2]).0, "unknown_district");
        let (code, message) = reason(&rows[3]);
        assert_eq!(code, "invalid_request");
        assert!(message.contains("not inside Chongqing"), "{message}");
        let (code, message) = reason(&rows[4]);
        assert_eq!(code, "invalid_id_number");
        assert!(message.contains("机构专员身份证号码"), "{message}");
        assert!(reason(&rows[5]).1.contains("机构类型"));
        assert!(reason(&rows[6]).1.contains("培训机构经纬度"));
        assert!(rows[7].checked.is_ok());
        let (code, message) = reason(&rows[8]);
        assert_eq!(code, "institution_exists");
        assert!(message.contains("line 9"), "{message}");
    }

    #[test]
    fn file_level_problems_are_errors() {
        let error = |bytes: &[u8]| read_form(bytes, &districts()).unwrap_err().to_string();
        assert!(error(b"").contains("empty"));
        assert!(error("机构名称,机构地址\n".as_bytes()).contains("行政区划编码"));
        assert!(error(HEADER.as_bytes()).contains("no institution rows"));
        let gbk_name = [0xD6u8, 0xD8, 0xC7, 0xEC]; // 重庆 in GBK
        let mut bytes = HEADER.as_bytes().to_vec();
        bytes.extend_from_slice(&gbk_name);
        bytes.extend_from_slice(b",500101,a,b,5000001,,c,d,e\n");
        assert!(error(&bytes).contains("UTF-8"));
    }

    #[test]
    fn answers_become_outcomes() {
        let form = format!(
            "{HEADER}甲,500101,地址,023-1,5000021,,刘路,11010519491231002X,\"29.56,106.55\"\n乙,500101,地址,023-1,5000022,,刘路,11010519491231002X,\"29.56,106.55\"\n丙,500101,地址,023-1,123,,刘路,11010519491231002X,\"29.56,106.55\"\n"
        );
        let rows = read_form(form.as_bytes(), &districts()).unwrap();
        let sent = requests(&rows);
        assert_eq!(sent.len(), 2);
        let answers = sent
            .iter()
            .map(|r| Answer {
                id: r.id.clone(),
                outcome: Ok(crate::domain::op::Reply::Done {}),
            })
            .collect();
        let existing: HashSet<InstitutionCode> = ["5000022".parse().unwrap()].into();
        let outcomes = outcomes(&rows, answers, &existing);
        assert_eq!(outcomes[0].status, Status::Registered);
        assert_eq!(outcomes[1].status, Status::AlreadyPresent);
        assert!(outcomes[2].is_refused());
        assert_eq!(outcomes[2].to_json()["reason"], "invalid_request");
        assert_eq!(
            summary(&outcomes),
            "3 rows: 1 registered, 1 already present, 1 refused"
        );
    }
}
