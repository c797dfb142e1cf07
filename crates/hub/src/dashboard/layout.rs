//! The page shell (head, header, navigation, sign-out) and small pieces every page uses: status
//! badges (symbol + text + colour), times, the sign-in form.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::health::{status_symbol, Health};
use super::session::{encode_component, Session};

/// The page title and where it sits.
pub struct Page<'a> {
    pub title: &'a str,
    /// Breadcrumb links before the title: (label, href).
    pub crumbs: &'a [(&'a str, String)],
    /// `/events?...` for a page that updates live, `None` otherwise.
    pub live: Option<String>,
    /// The app whose navigation (its instances, recipes, releases) the page shows, and which of
    /// those the page is (`None` for a page under one of them, such as an instance).
    pub app: Option<(&'a str, Option<AppTab>)>,
}

/// The pages of an app's navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppTab {
    Instances,
    Recipes,
    Releases,
}

impl AppTab {
    const ALL: [AppTab; 3] = [AppTab::Instances, AppTab::Recipes, AppTab::Releases];

    fn label(self) -> &'static str {
        match self {
            AppTab::Instances => "instances",
            AppTab::Recipes => "recipes",
            AppTab::Releases => "releases and upgrades",
        }
    }

    fn href(self, app: &str) -> String {
        let app = encode_component(app);
        match self {
            AppTab::Instances => format!("/apps/{app}"),
            AppTab::Recipes => format!("/apps/{app}/recipes"),
            AppTab::Releases => format!("/apps/{app}/releases"),
        }
    }
}

/// An app's navigation bar.
fn app_nav(app: &str, current: Option<AppTab>) -> Markup {
    html! {
        nav.app-nav aria-label=(format!("app {app}")) {
            span.muted { "app " strong { (app) } ":" }
            @for tab in AppTab::ALL {
                @if current == Some(tab) {
                    a href=(tab.href(app)) aria-current="page" data-tab=(tab.label()) { (tab.label()) }
                } @else {
                    a href=(tab.href(app)) data-tab=(tab.label()) { (tab.label()) }
                }
            }
        }
    }
}

/// A full page around `body`.
pub fn page(page: &Page<'_>, session: &Session, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(page.title))
            body {
                header.top {
                    a.brand href="/" { span aria-hidden="true" { "◆" } " opsagent hub" }
                    nav aria-label="breadcrumb" {
                        @for (label, href) in page.crumbs {
                            a href=(href) { (label) } span.sep aria-hidden="true" { "›" }
                        }
                        span aria-current="page" { (page.title) }
                    }
                    @if page.live.is_some() {
                        span #live-indicator .live title="live updates" { span aria-hidden="true" { "●" } " live" }
                    }
                    form.signout method="post" action="/signout" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" { "Sign out" }
                    }
                }
                @if let Some((app, current)) = page.app { (app_nav(app, current)) }
                main #main data-live=[page.live.as_deref()] {
                    (body)
                }
            }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            title { (title) " · opsagent hub" }
            link rel="stylesheet" href=(super::assets::CSS_PATH);
            script src=(super::assets::JS_PATH) defer {}
        }
    }
}

/// The sign-in page, with an error after a refused token.
pub fn signin(next: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in"))
            body.signin {
                main #main {
                    form.card.signin-form method="post" action="/signin" {
                        h1 { span aria-hidden="true" { "◆" } " opsagent hub" }
                        p { "Sign in with the operator token (the file " code { "api-token" } " in the hub's data directory)." }
                        @if let Some(error) = error {
                            p.error role="alert" { span aria-hidden="true" { "✖ " } (error) }
                        }
                        label for="token" { "Operator token" }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus;
                        input type="hidden" name="next" value=(next);
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

/// An instance's health as a badge.
pub fn health_badge(health: Health) -> Markup {
    html! {
        span class=(format!("badge h-{}", health.label())) {
            span aria-hidden="true" { (health.symbol()) } " " (health.label())
        }
    }
}

/// A state or round status as a badge.
pub fn status_badge(status: &str) -> Markup {
    html! {
        span class=(format!("badge s-{}", css_word(status))) {
            span aria-hidden="true" { (status_symbol(status)) } " " (status)
        }
    }
}

/// A status as one compact cell (symbol only, the status in its title and for screen readers).
pub fn status_cell(state_id: &str, status: &str) -> Markup {
    let label = format!("{state_id}: {status}");
    html! {
        span class=(format!("cell s-{}", css_word(status))) title=(label) role="img" aria-label=(label) {
            (status_symbol(status))
        }
    }
}

/// An RFC 3339 time from the store as `YYYY-MM-DD HH:MM:SS`, the full text in `title`.
pub fn time(text: Option<&str>) -> Markup {
    match text {
        None => html! { span.muted { "never" } },
        Some(text) => {
            let short = text.get(..19).unwrap_or(text).replace('T', " ");
            html! { time datetime=(text) title=(text) { (short) } }
        }
    }
}

/// A duration in milliseconds, short.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// A status word reduced to what a CSS class may hold.
fn css_word(status: &str) -> String {
    status.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect()
}

/// Empty markup.
pub fn nothing() -> Markup {
    PreEscaped(String::new())
}
