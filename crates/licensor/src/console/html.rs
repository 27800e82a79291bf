//! Server-rendered HTML without a template engine: escaped text, a page frame, and the few
//! pieces every page uses (forms with labels and the CSRF field, tables, pagination). No
//! script anywhere: every flow is a link or a form, so it works with JavaScript off and the
//! Content-Security-Policy can forbid scripts outright.

use std::fmt::Write;

/// Text made safe for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// A navigation entry: (href, label).
pub type Nav<'a> = &'a [(&'a str, &'a str)];

/// A whole page: `title`, the navigation (empty when signed out), a flash message, the body.
pub fn page(
    base: &str,
    title: &str,
    nav: Nav<'_>,
    signed_in: Option<(&str, &str)>,
    flash: Option<&str>,
    body: &str,
) -> String {
    let mut h = String::with_capacity(body.len() + 2048);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Licensor</title><link rel=\"stylesheet\" href=\"{base}/assets/console.css\"></head><body>",
        esc(title)
    );
    h.push_str("<header><a class=\"brand\" href=\"");
    h.push_str(base);
    h.push_str("\">Licensor</a>");
    if !nav.is_empty() {
        h.push_str("<nav aria-label=\"Main\"><ul>");
        for (href, label) in nav {
            let _ = write!(h, "<li><a href=\"{}\">{}</a></li>", esc(href), esc(label));
        }
        h.push_str("</ul></nav>");
    }
    if let Some((who, csrf)) = signed_in {
        let _ = write!(
            h,
            "<form class=\"signout\" method=\"post\" action=\"{base}/sign-out\"><span>{}</span>{}<button type=\"submit\">Sign out</button></form>",
            esc(who),
            csrf_field(csrf)
        );
    }
    h.push_str("</header><main id=\"main\">");
    let _ = write!(h, "<h1>{}</h1>", esc(title));
    if let Some(flash) = flash {
        let _ = write!(h, "<p class=\"flash\" role=\"status\">{}</p>", esc(flash));
    }
    h.push_str(body);
    h.push_str("</main></body></html>");
    h
}

pub fn csrf_field(token: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(token))
}

/// A labelled input. `kind` is the input type; `required` adds the attribute.
pub fn input(name: &str, label: &str, kind: &str, value: &str, required: bool) -> String {
    format!(
        "<p><label for=\"f-{name}\">{}</label><input id=\"f-{name}\" name=\"{name}\" type=\"{kind}\" value=\"{}\"{}></p>",
        esc(label),
        esc(value),
        if required { " required" } else { "" }
    )
}

/// A labelled select of (value, label) options.
pub fn select(name: &str, label: &str, options: &[(String, String)], selected: &str) -> String {
    let mut h = format!("<p><label for=\"f-{name}\">{}</label><select id=\"f-{name}\" name=\"{name}\">", esc(label));
    for (value, text) in options {
        let sel = if value == selected { " selected" } else { "" };
        let _ = write!(h, "<option value=\"{}\"{sel}>{}</option>", esc(value), esc(text));
    }
    h.push_str("</select></p>");
    h
}

/// A labelled checkbox.
pub fn checkbox(name: &str, label: &str, checked: bool) -> String {
    format!(
        "<p class=\"check\"><input id=\"f-{name}\" name=\"{name}\" type=\"checkbox\" value=\"true\"{}><label for=\"f-{name}\">{}</label></p>",
        if checked { " checked" } else { "" },
        esc(label)
    )
}

/// A form posting to `action` with the CSRF field, `fields` and a submit button.
pub fn form(action: &str, csrf: &str, fields: &str, submit: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\">{}{fields}<p><button type=\"submit\">{}</button></p></form>",
        esc(action),
        csrf_field(csrf),
        esc(submit)
    )
}

/// A one-button form (an action on a resource).
pub fn button(action: &str, csrf: &str, label: &str, class: &str) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\">{}<button type=\"submit\" class=\"{class}\">{}</button></form>",
        esc(action),
        csrf_field(csrf),
        esc(label)
    )
}

/// A table: a caption, the header cells, and rows of already-escaped HTML cells.
pub fn table(caption: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut h = format!("<table><caption>{}</caption><thead><tr>", esc(caption));
    for c in head {
        let _ = write!(h, "<th scope=\"col\">{}</th>", esc(c));
    }
    h.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(h, "<tr><td colspan=\"{}\">None yet.</td></tr>", head.len());
    }
    for row in rows {
        h.push_str("<tr>");
        for cell in row {
            h.push_str("<td>");
            h.push_str(cell);
            h.push_str("</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    h
}

/// A link, escaped.
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

/// Previous/next links for page `number` of `total` rows, `size` a page, keeping `query`.
pub fn pager(path: &str, query: &str, number: i64, size: i64, total: i64) -> String {
    let pages = ((total + size - 1) / size).max(1);
    let mut h =
        format!("<nav class=\"pager\" aria-label=\"Pages\"><span>Page {number} of {pages} ({total} in all)</span>");
    let href = |n: i64| {
        let sep = if query.is_empty() { "" } else { "&" };
        format!("{path}?{query}{sep}page={n}")
    };
    if number > 1 {
        let _ = write!(h, " {}", link(&href(number - 1), "Previous"));
    }
    if number < pages {
        let _ = write!(h, " {}", link(&href(number + 1), "Next"));
    }
    h.push_str("</nav>");
    h
}

/// Links for a list paged by keyset: back to the first page, and on to the rows after `next`
/// (a cursor), keeping `query`. `total` counts the matching rows; `capped` says it stopped
/// counting there.
pub fn keyset_pager(path: &str, query: &str, first: bool, next: Option<&str>, total: i64, capped: bool) -> String {
    let count = if capped { format!("more than {}", total - 1) } else { total.to_string() };
    let mut h = format!("<nav class=\"pager\" aria-label=\"Pages\"><span>{count} in all</span>");
    let sep = if query.is_empty() { "" } else { "&" };
    if !first {
        let _ = write!(h, " {}", link(&format!("{path}?{query}"), "First page"));
    }
    if let Some(cursor) = next {
        let _ = write!(h, " {}", link(&format!("{path}?{query}{sep}before={cursor}"), "Next"));
    }
    h.push_str("</nav>");
    h
}

/// A definition list of (term, already-escaped value).
pub fn facts(items: &[(&str, String)]) -> String {
    let mut h = String::from("<dl>");
    for (term, value) in items {
        let _ = write!(h, "<dt>{}</dt><dd>{value}</dd>", esc(term));
    }
    h.push_str("</dl>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        let f = input("name", "Name <b>", "text", "\"><script>", true);
        assert!(!f.contains("<script>") && !f.contains("<b>"), "{f}");
        assert!(f.contains("<label for=\"f-name\">"), "every input has its label");
        let t = table("T", &["A"], &[vec![esc("<i>")]]);
        assert!(t.contains("&lt;i&gt;"));
    }

    #[test]
    fn pager_links_keep_the_query() {
        let p = pager("/admin/licenses", "q=abc", 2, 25, 80);
        assert!(p.contains("Page 2 of 4"));
        assert!(p.contains("/admin/licenses?q=abc&amp;page=1"));
        assert!(p.contains("page=3"));
    }
}
