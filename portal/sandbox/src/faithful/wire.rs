//! The query protocol as the faithful layer needs it: form parameters in,
//! AWS-shaped XML out.
//!
//! EC2, Auto Scaling and CloudWatch (as the pinned SDK speaks it) all send a
//! form-encoded body with `Action` and `Version`; they answer in XML, EC2 in
//! its own `<Response><Errors>` shape, the other two in the common
//! `<ErrorResponse>` one. The SDK reads the error code and message from
//! exactly these elements, so that is what an answer made here must have.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};

/// The services whose calls the faithful layer looks at, told apart by the
/// API `Version` every query request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Ec2,
    AutoScaling,
    CloudWatch,
}

impl Service {
    fn from_version(version: &str) -> Option<Service> {
        match version {
            "2016-11-15" => Some(Service::Ec2),
            "2011-01-01" => Some(Service::AutoScaling),
            "2010-08-01" => Some(Service::CloudWatch),
            _ => None,
        }
    }

    fn namespace(self) -> &'static str {
        match self {
            Service::Ec2 => "http://ec2.amazonaws.com/doc/2016-11-15/",
            Service::AutoScaling => "http://autoscaling.amazonaws.com/doc/2011-01-01/",
            Service::CloudWatch => "http://monitoring.amazonaws.com/doc/2010-08-01/",
        }
    }
}

/// The decoded form of a query-protocol request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a form body; anything that is not one gives no parameters.
    pub(crate) fn parse(body: &[u8]) -> Params {
        Params(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The service and action, if this is a query request for one of ours.
    pub(crate) fn call(&self) -> Option<(Service, &str)> {
        let service = Service::from_version(self.get("Version")?)?;
        Some((service, self.get("Action")?))
    }

    pub(crate) fn flag(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| v.eq_ignore_ascii_case("true"))
    }

    pub(crate) fn int(&self, key: &str) -> Option<i32> {
        self.get(key)?.trim().parse().ok()
    }

    /// A list parameter in either spelling, `Key.N` (EC2) or
    /// `Key.member.N` (the other query services), in the order of N.
    pub(crate) fn list(&self, key: &str) -> Vec<&str> {
        let mut items: Vec<(u32, &str)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(key)?.strip_prefix('.')?;
                let index = rest.strip_prefix("member.").unwrap_or(rest);
                Some((index.parse().ok()?, v.as_str()))
            })
            .collect();
        items.sort_by_key(|(n, _)| *n);
        items.into_iter().map(|(_, v)| v).collect()
    }
}

/// Text made safe for an XML element.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// `<tag>text</tag>`, escaped.
pub(crate) fn element(tag: &str, text: &str) -> String {
    format!("<{tag}>{}</{tag}>", escape(text))
}

/// A timestamp as the query protocol writes it (ISO 8601, UTC, millis).
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The refusal AWS gives, in `service`'s own error shape, with HTTP 400.
pub(crate) fn error(service: Service, code: &str, message: &str) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let body = match service {
        Service::Ec2 => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>{}{}</Error>\
             </Errors><RequestID>{request_id}</RequestID></Response>",
            element("Code", code),
            element("Message", message),
        ),
        Service::AutoScaling | Service::CloudWatch => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{}\"><Error>\
             <Type>Sender</Type>{}{}</Error><RequestId>{request_id}</RequestId></ErrorResponse>",
            service.namespace(),
            element("Code", code),
            element("Message", message),
        ),
    };
    xml_response(StatusCode::BAD_REQUEST, body, &request_id)
}

/// A successful answer to `action` whose result element holds `result`
/// (already XML); `None` for actions whose answer has no result.
pub(crate) fn success(service: Service, action: &str, result: Option<&str>) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = result
        .map(|inner| format!("<{action}Result>{inner}</{action}Result>"))
        .unwrap_or_default();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{}\">{result}\
         <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>\
         </{action}Response>",
        service.namespace(),
    );
    xml_response(StatusCode::OK, body, &request_id)
}

fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

/// An opaque paging token: where the next page starts.
pub(crate) fn next_token(start: usize, page: usize, total: usize) -> Option<String> {
    (start + page < total).then(|| format!("cloudpulse-{}", start + page))
}

/// Where the page a token asks for starts; an unknown token starts over.
pub(crate) fn token_start(token: Option<&str>) -> usize {
    token
        .and_then(|t| t.strip_prefix("cloudpulse-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_both_spellings_in_index_order() {
        let ec2 = Params::parse(b"Action=TerminateInstances&InstanceId.2=i-b&InstanceId.1=i-a");
        assert_eq!(ec2.list("InstanceId"), ["i-a", "i-b"]);
        let query = Params::parse(
            b"AlarmNames.member.10=j&AlarmNames.member.1=a&AlarmNames.member.2=b&AlarmNamesX.1=no",
        );
        assert_eq!(query.list("AlarmNames"), ["a", "b", "j"]);
    }

    #[test]
    fn the_service_comes_from_the_version() {
        let p = Params::parse(b"Action=DeleteSubnet&Version=2016-11-15&SubnetId=subnet-1");
        assert_eq!(p.call(), Some((Service::Ec2, "DeleteSubnet")));
        assert_eq!(p.get("SubnetId"), Some("subnet-1"));
        assert_eq!(Params::parse(b"{\"json\":1}").call(), None);
        let cw = Params::parse(b"Action=SetAlarmState&Version=2010-08-01&StateReason=a+b%26c");
        assert_eq!(cw.call(), Some((Service::CloudWatch, "SetAlarmState")));
        assert_eq!(cw.get("StateReason"), Some("a b&c"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            element("Message", "a <b> & \"c\""),
            "<Message>a &lt;b&gt; &amp; &quot;c&quot;</Message>"
        );
    }

    #[test]
    fn tokens_page_through() {
        assert_eq!(next_token(0, 2, 5).as_deref(), Some("cloudpulse-2"));
        assert_eq!(token_start(Some("cloudpulse-2")), 2);
        assert_eq!(next_token(4, 1, 5), None);
        assert_eq!(token_start(Some("junk")), 0);
    }
}
