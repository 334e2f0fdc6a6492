//! The bureau's progress report (the notice's attachment 1): a `stats` answer
//! rendered as text, CSV or a self-contained HTML page. Pure: no I/O, no
//! clock, so every figure is tested from a `StatsView` alone.

use std::fmt::Write as _;

use crate::domain::ids::DistrictCode;
use crate::domain::op::StatsView;

/// The report's formats (`voucherctl report --format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Csv,
    Html,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(text: &str) -> Result<Format, String> {
        match text {
            "text" => Ok(Format::Text),
            "csv" => Ok(Format::Csv),
            "html" => Ok(Format::Html),
            _ => Err(format!("unknown report format {text:?} (text, csv, html)")),
        }
    }
}

/// Renders `stats` in `format`.
pub fn render(stats: &StatsView, format: Format) -> String {
    match format {
        Format::Text => text(stats),
        Format::Csv => csv(stats),
        Format::Html => html(stats),
    }
}

/// `part` as a percentage of `whole`, rounded to 2 decimals (0 when `whole` is 0),
/// the same rounding as the ledger's `percent_of_target`.
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 10_000.0 / whole as f64).round() / 100.0
    }
}

/// 300000 → "300,000".
fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// 1234567 fen → "12,345.67" (yuan, thousands separated).
fn yuan(fen: u64) -> String {
    format!("{}.{:02}", thousands(fen / 100), fen % 100)
}

/// "500101 万州区": a district code with its name when the answer has it.
fn district_label(stats: &StatsView, code: &DistrictCode) -> String {
    match stats.districts.iter().find(|d| d.code == *code) {
        Some(d) => format!("{} {}", code.as_str(), d.name),
        None => code.as_str().to_owned(),
    }
}

/// "figures as of <time>, audit record <seq>": what the figures include.
fn as_of(stats: &StatsView) -> String {
    format!(
        "数据截至 figures as of {}, audit record {}",
        stats.at,
        thousands(stats.seq)
    )
}

/// Terminal columns a text takes: CJK and full-width characters take two.
fn display_width(text: &str) -> usize {
    text.chars()
        .map(|c| match u32::from(c) {
            0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

/// `text` padded with spaces to `width` terminal columns.
fn pad(text: &str, width: usize) -> String {
    let mut out = text.to_owned();
    out.extend(std::iter::repeat_n(
        ' ',
        width.saturating_sub(display_width(text)),
    ));
    out
}

fn average_text(average: Option<f64>) -> String {
    average.map_or_else(|| "-".to_owned(), |a| format!("{a:.2}"))
}

/// The three coverage figures: (label, part, whole).
fn coverage_rows(stats: &StatsView) -> [(&'static str, &'static str, u64, u64); 3] {
    let c = &stats.coverage;
    [
        (
            "districts_using_vouchers",
            "区县用券覆盖 districts using vouchers",
            c.districts_used,
            c.districts_total,
        ),
        (
            "institutions_using_vouchers",
            "培训机构用券覆盖 institutions using vouchers",
            c.institutions_used,
            c.institutions_registered,
        ),
        (
            "used_with_checkin",
            "打卡签到覆盖 used vouchers with check-ins",
            c.used_with_checkin,
            c.used,
        ),
    ]
}

/// A plain-text report for a terminal (CJK-aware column widths).
pub fn text(stats: &StatsView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "职业培训券推广使用进度 Vocational training vouchers: progress report, campaign {}",
        stats.year
    );
    let _ = writeln!(out, "{}\n", as_of(stats));
    let _ = writeln!(
        out,
        "{:>3}  {}{}{:>11} {:>11} {:>11} {:>11} {:>9} {:>16}",
        "#",
        pad("code", 8),
        pad("district 区县", 14),
        "target",
        "issued",
        "claimed",
        "used",
        "% target",
        "settled ¥"
    );
    for (index, d) in stats.districts.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:>3}  {}{}{:>11} {:>11} {:>11} {:>11} {:>9.2} {:>16}",
            index + 1,
            pad(d.code.as_str(), 8),
            pad(&d.name, 14),
            thousands(d.target),
            thousands(d.issued),
            thousands(d.claimed),
            thousands(d.used),
            d.percent_of_target,
            yuan(d.settled_fen)
        );
    }
    let city = &stats.city;
    let _ = writeln!(
        out,
        "     {}{}{:>11} {:>11} {:>11} {:>11} {:>9.2} {:>16}\n",
        pad("", 8),
        pad("合计 city", 14),
        thousands(city.target),
        thousands(city.issued),
        thousands(city.claimed),
        thousands(city.used),
        city.percent_of_target,
        yuan(city.settled_fen)
    );
    let _ = writeln!(
        out,
        "issued  {} of the {} goal ({:.2}%)",
        thousands(city.issued),
        thousands(city.issued_goal),
        percent(city.issued, city.issued_goal)
    );
    let _ = writeln!(
        out,
        "used    {} of the {} goal ({:.2}%)",
        thousands(city.used),
        thousands(city.used_goal),
        percent(city.used, city.used_goal)
    );
    let _ = writeln!(
        out,
        "settled ¥{} of subsidies (补贴已结算)\n",
        yuan(city.settled_fen)
    );
    for (_, label, part, whole) in coverage_rows(stats) {
        let _ = writeln!(
            out,
            "{} {}/{} ({:.2}%)",
            pad(&format!("{label}:"), 46),
            thousands(part),
            thousands(whole),
            percent(part, whole)
        );
    }
    let _ = writeln!(
        out,
        "\n培训评价 institutions: vouchers used, average evaluation score, subsidies settled"
    );
    if stats.institutions.is_empty() {
        let _ = writeln!(out, "(no institutions registered)");
        return out;
    }
    let _ = writeln!(
        out,
        "{}{}{}{:>11} {:>11} {:>9} {:>16}",
        pad("code", 9),
        pad("district 区县", 22),
        pad("institution 培训机构", 32),
        "used",
        "evaluations",
        "average",
        "settled ¥"
    );
    for i in &stats.institutions {
        let _ = writeln!(
            out,
            "{}{}{}{:>11} {:>11} {:>9} {:>16}",
            pad(&i.code.to_string(), 9),
            pad(&district_label(stats, &i.district), 22),
            pad(&i.name, 32),
            thousands(i.used),
            thousands(i.evaluations),
            average_text(i.average_score),
            yuan(i.settled_fen)
        );
    }
    out
}

/// The CSV header; every row has these columns (empty where they do not apply).
pub const CSV_HEADER: [&str; 13] = [
    "section",
    "code",
    "name",
    "district",
    "target",
    "issued",
    "claimed",
    "used",
    "percent",
    "evaluations",
    "average_score",
    "settled_fen",
    "district_name",
];

/// A CSV report for spreadsheets: UTF-8 with a byte-order mark (so Excel reads
/// Chinese), one header, one row per figure. `section` is `district`, `city`,
/// `goal_issued`, `goal_used`, one of the three coverage names, or
/// `institution`. Goals and coverage put the whole in `target`, the part in
/// `issued` or `used`, and the ratio in `percent`. The first row after the
/// header, `as_of`, has the audit sequence number the figures were read at
/// in `code` and their time (RFC 3339, +08:00) in `name`. Numbers are plain
/// (no separators) for spreadsheets; `settled_fen` is in fen.
pub fn csv(stats: &StatsView) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut row = |cells: [&str; 13]| {
        writer
            .write_record(cells)
            .expect("writing CSV to memory cannot fail");
    };
    row(CSV_HEADER);
    let seq = stats.seq.to_string();
    row([
        "as_of", &seq, &stats.at, "", "", "", "", "", "", "", "", "", "",
    ]);
    for d in &stats.districts {
        row([
            "district",
            d.code.as_str(),
            &d.name,
            "",
            &d.target.to_string(),
            &d.issued.to_string(),
            &d.claimed.to_string(),
            &d.used.to_string(),
            &format!("{:.2}", d.percent_of_target),
            "",
            "",
            &d.settled_fen.to_string(),
            "",
        ]);
    }
    let city = &stats.city;
    row([
        "city",
        "",
        "合计",
        "",
        &city.target.to_string(),
        &city.issued.to_string(),
        &city.claimed.to_string(),
        &city.used.to_string(),
        &format!("{:.2}", city.percent_of_target),
        "",
        "",
        &city.settled_fen.to_string(),
        "",
    ]);
    row([
        "goal_issued",
        "",
        "发券目标",
        "",
        &city.issued_goal.to_string(),
        &city.issued.to_string(),
        "",
        "",
        &format!("{:.2}", percent(city.issued, city.issued_goal)),
        "",
        "",
        "",
        "",
    ]);
    row([
        "goal_used",
        "",
        "用券目标",
        "",
        &city.used_goal.to_string(),
        "",
        "",
        &city.used.to_string(),
        &format!("{:.2}", percent(city.used, city.used_goal)),
        "",
        "",
        "",
        "",
    ]);
    for (section, label, part, whole) in coverage_rows(stats) {
        let name = label.split(' ').next().unwrap_or(label);
        row([
            section,
            "",
            name,
            "",
            &whole.to_string(),
            "",
            "",
            &part.to_string(),
            &format!("{:.2}", percent(part, whole)),
            "",
            "",
            "",
            "",
        ]);
    }
    for i in &stats.institutions {
        let district_name = stats
            .districts
            .iter()
            .find(|d| d.code == i.district)
            .map_or("", |d| d.name.as_str());
        row([
            "institution",
            &i.code.to_string(),
            &i.name,
            i.district.as_str(),
            "",
            "",
            "",
            &i.used.to_string(),
            "",
            &i.evaluations.to_string(),
            &i.average_score
                .map(|a| format!("{a:.2}"))
                .unwrap_or_default(),
            &i.settled_fen.to_string(),
            district_name,
        ]);
    }
    let bytes = writer
        .into_inner()
        .expect("flushing CSV to memory cannot fail");
    let body = String::from_utf8(bytes).expect("CSV of UTF-8 cells is UTF-8");
    format!("\u{feff}{body}")
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const HTML_STYLE: &str = "
body { font-family: \"Noto Sans CJK SC\", \"Source Han Sans SC\", \"Microsoft YaHei\", \"PingFang SC\", sans-serif;
       margin: 24px 32px; color: #1f2933; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 2px solid #c8102e; padding-bottom: 4px; }
.sub { color: #52606d; margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #d9e2ec; border-radius: 6px; padding: 10px 14px; min-width: 220px; }
.card .label { color: #52606d; font-size: 13px; }
.card .value { font-size: 20px; font-weight: bold; }
.card .ratio { color: #52606d; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e4e7eb; text-align: right; white-space: nowrap; }
th { background: #f0f4f8; }
td.name, th.name { text-align: left; }
td.chart { width: 340px; text-align: left; }
.track { background: #eef2f7; height: 14px; width: 320px; border-radius: 3px; position: relative; }
.bar { background: #2f80ed; height: 14px; border-radius: 3px; }
.bar.done { background: #27ae60; }
tr.total td { font-weight: bold; border-top: 2px solid #9aa5b1; }
";

/// A bar of `percent` (capped at the track's width; the number says the rest).
fn bar(percent: f64) -> String {
    let width = percent.clamp(0.0, 100.0);
    let class = if percent >= 100.0 { "bar done" } else { "bar" };
    format!(
        "<div class=\"track\"><div class=\"{class}\" style=\"width:{width:.2}%\" data-percent=\"{percent:.2}\"></div></div>"
    )
}

fn card(id: &str, label: &str, part: u64, whole: u64, whole_label: &str) -> String {
    format!(
        "<div class=\"card\" id=\"{id}\"><div class=\"label\">{label}</div>\
         <div class=\"value\"><span class=\"part\">{}</span> / <span class=\"whole\">{}</span></div>\
         <div class=\"ratio\">{whole_label} <span class=\"percent\">{:.2}</span>%</div>{}</div>",
        thousands(part),
        thousands(whole),
        percent(part, whole),
        bar(percent(part, whole))
    )
}

/// A single self-contained HTML page: inline CSS, CSS bars, no external
/// resource, UTF-8. Elements carry ids and classes the tests read
/// (`tr.district[data-code]`, `#city-*`, `#goal-*`, `#coverage-*`, `tr.institution`).
pub fn html(stats: &StatsView) -> String {
    let city = &stats.city;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>职业培训券推广使用进度 {year}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n\
         <h1>各区县（自治县）职业培训券推广使用进度</h1>\n\
         <p class=\"sub\">Vocational training vouchers: progress against the district targets, campaign <span id=\"year\">{year}</span></p>\n\
         <p class=\"sub\" id=\"as-of\">数据截至 figures as of <time id=\"at\">{at}</time>, audit record <span id=\"seq\">{seq}</span></p>\n",
        year = stats.year,
        at = escape(&stats.at),
        seq = stats.seq,
    );
    out.push_str("<h2>全市目标 City goals</h2>\n<div class=\"cards\">\n");
    out += &card(
        "goal-issued",
        "发券 issued",
        city.issued,
        city.issued_goal,
        "of the issued goal",
    );
    out += &card(
        "goal-used",
        "用券 used",
        city.used,
        city.used_goal,
        "of the used goal",
    );
    let _ = writeln!(
        out,
        "<div class=\"card\" id=\"settled\"><div class=\"label\">补贴已结算 subsidies settled</div>\
         <div class=\"value\">¥<span id=\"city-settled\">{}</span></div></div>",
        yuan(city.settled_fen)
    );
    out.push_str("</div>\n<h2>覆盖 Coverage</h2>\n<div class=\"cards\">\n");
    for (section, label, part, whole) in coverage_rows(stats) {
        out += &card(
            &format!("coverage-{}", section.replace('_', "-")),
            label,
            part,
            whole,
            "covered",
        );
    }
    out.push_str("</div>\n<h2>各区县用券任务 Districts against their targets</h2>\n");
    out.push_str(
        "<table id=\"districts\">\n<thead><tr><th>#</th><th class=\"name\">代码 code</th>\
         <th class=\"name\">区县 district</th><th>目标 target</th><th>发券 issued</th>\
         <th>领券 claimed</th><th>用券 used</th><th>% target</th>\
         <th>补贴 settled ¥</th><th class=\"name\">进度 progress</th></tr></thead>\n<tbody>\n",
    );
    for (index, d) in stats.districts.iter().enumerate() {
        let _ = writeln!(
            out,
            "<tr class=\"district\" data-code=\"{code}\"><td>{n}</td><td class=\"name\">{code}</td>\
             <td class=\"name\">{name}</td><td class=\"target\">{}</td><td class=\"issued\">{}</td>\
             <td class=\"claimed\">{}</td><td class=\"used\">{}</td><td class=\"percent\">{:.2}</td>\
             <td class=\"settled\">{}</td><td class=\"chart\">{}</td></tr>",
            thousands(d.target),
            thousands(d.issued),
            thousands(d.claimed),
            thousands(d.used),
            d.percent_of_target,
            yuan(d.settled_fen),
            bar(d.percent_of_target),
            n = index + 1,
            code = escape(d.code.as_str()),
            name = escape(&d.name),
        );
    }
    let _ = writeln!(
        out,
        "</tbody>\n<tfoot><tr class=\"total\"><td></td><td class=\"name\"></td><td class=\"name\">合计 city</td>\
         <td id=\"city-target\">{}</td><td id=\"city-issued\">{}</td><td id=\"city-claimed\">{}</td>\
         <td id=\"city-used\">{}</td><td id=\"city-percent\">{:.2}</td><td id=\"city-settled-total\">{}</td>\
         <td class=\"chart\">{}</td></tr></tfoot>\n</table>",
        thousands(city.target),
        thousands(city.issued),
        thousands(city.claimed),
        thousands(city.used),
        city.percent_of_target,
        yuan(city.settled_fen),
        bar(city.percent_of_target)
    );
    out.push_str("<h2>培训机构 Institutions: vouchers used and evaluations</h2>\n");
    if stats.institutions.is_empty() {
        out.push_str("<p id=\"no-institutions\">No institution is registered.</p>\n");
    } else {
        out.push_str(
            "<table id=\"institutions\">\n<thead><tr><th class=\"name\">机构编码 code</th>\
             <th class=\"name\">机构名称 institution</th><th class=\"name\">区县 district</th>\
             <th>用券 used</th><th>评价 evaluations</th><th>平均分 average score</th>\
             <th>补贴 settled ¥</th></tr></thead>\n<tbody>\n",
        );
        for i in &stats.institutions {
            let _ = writeln!(
                out,
                "<tr class=\"institution\" data-code=\"{code}\"><td class=\"name\">{code}</td>\
                 <td class=\"name\">{}</td><td class=\"name\">{}</td><td class=\"used\">{}</td>\
                 <td class=\"evaluations\">{}</td><td class=\"average\">{}</td>\
                 <td class=\"settled\">{}</td></tr>",
                escape(&i.name),
                escape(&district_label(stats, &i.district)),
                thousands(i.used),
                thousands(i.evaluations),
                average_text(i.average_score),
                yuan(i.settled_fen),
                code = i.code,
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_widths() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(300_000), "300,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(75_050), "750.50");
        assert_eq!(yuan(123_456_789), "1,234,567.89");
        assert_eq!(percent(2, 500), 0.4);
        assert_eq!(percent(1, 3), 33.33);
        assert_eq!(percent(5, 0), 0.0);
        assert_eq!(display_width("万州区"), 6);
        assert_eq!(display_width("LJXQ"), 4);
        assert_eq!(pad("渝中区", 8), "渝中区  ");
    }

    #[test]
    fn html_escapes_text() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn bars_are_capped_and_marked_done() {
        assert!(bar(40.0).contains("width:40.00%"));
        assert!(bar(250.0).contains("width:100.00%"));
        assert!(bar(250.0).contains("bar done"));
        assert!(bar(250.0).contains("data-percent=\"250.00\""));
    }

    #[test]
    fn formats_parse() {
        assert_eq!("html".parse::<Format>(), Ok(Format::Html));
        assert!("pdf".parse::<Format>().is_err());
    }
}
