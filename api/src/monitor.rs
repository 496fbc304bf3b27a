//! `GET /v1/agent/monitor`: an agent's log lines as they happen (`muster monitor`).

use reqwest::Method;

use crate::client::{http_error, transport_reason, Client, Error, Param};

/// The lines of one monitor request, read as they arrive.
pub struct LogStream {
    response: reqwest::Response,
    buf: Vec<u8>,
}

impl LogStream {
    /// The next line, without its newline; `None` once the agent ended the stream.
    pub async fn next_line(&mut self) -> Result<Option<String>, Error> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line[..pos]);
                return Ok(Some(text.trim_end_matches('\r').to_string()));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => {
                    let rest = std::mem::take(&mut self.buf);
                    return Ok(Some(String::from_utf8_lossy(&rest).into_owned()));
                }
                Err(e) => {
                    let url = self.response.url().clone();
                    return Err(Error::Transport(format!(
                        "reading the monitor stream from \"{url}\": {}",
                        transport_reason(&e, &url)
                    )));
                }
            }
        }
    }
}

impl Client {
    /// `GET /v1/agent/monitor?loglevel=&logjson`: streams the agent's log lines at `loglevel`
    /// (the agent's default, info, when `None`), as JSON objects with `json`. No timeout: the
    /// stream lasts until the agent ends it or the [`LogStream`] is dropped.
    pub async fn agent_monitor(
        &self,
        loglevel: Option<&str>,
        json: bool,
    ) -> Result<LogStream, Error> {
        let mut params: Vec<Param> = Vec::new();
        if let Some(level) = loglevel.filter(|l| !l.is_empty()) {
            params.push(("loglevel".to_string(), Some(level.to_string())));
        }
        if json {
            params.push(("logjson".to_string(), None));
        }
        let (request, url) = self.request(Method::GET, "/v1/agent/monitor", params, None)?;
        let response = request.send().await.map_err(|e| {
            Error::Transport(format!("Get \"{url}\": {}", transport_reason(&e, &url)))
        })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(http_error(status, &body));
        }
        Ok(LogStream {
            response,
            buf: Vec::new(),
        })
    }
}
