//! The shared client module against a real server: request/reply in both protocols,
//! pipelining, AUTH, and the errors a caller sees when the server is gone.

mod common;

use std::time::Duration;

use common::{TestServer, closed_port};
use kvcache::client::{Client, ClientError, OwnedReply, Protocol, encode_get, encode_put};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const T: Duration = Duration::from_secs(5);

#[test]
fn line_protocol_requests_and_pipelines() {
    let server = TestServer::default();
    rt().block_on(async {
        let mut c = Client::connect("127.0.0.1", server.port, Protocol::Text, T)
            .await
            .unwrap();
        assert_eq!(c.command_line(b"PUT a 1").await.unwrap(), b"OK stored");
        assert_eq!(c.command_line(b"GET a").await.unwrap(), b"OK 1");
        let replies = c
            .pipeline_lines(&["PUT b 2", "GET b", "GET nope", "EXISTS a"])
            .await
            .unwrap();
        assert_eq!(
            replies,
            vec![
                b"OK stored".to_vec(),
                b"OK 2".to_vec(),
                b"ERROR key not found".to_vec(),
                b"OK 1".to_vec()
            ]
        );
        // Classified replies over the same connection.
        let mut req = Vec::new();
        encode_put(Protocol::Text, b"c", b"3", 0, &mut req);
        encode_get(Protocol::Text, b"c", &mut req);
        encode_get(Protocol::Text, b"zz", &mut req);
        let replies = c.pipeline(&req, 3).await.unwrap();
        assert_eq!(
            replies,
            vec![
                OwnedReply::Ok(b"stored".to_vec()),
                OwnedReply::Ok(b"3".to_vec()),
                OwnedReply::Nil
            ]
        );
        c.send_line(b"QUIT").await.unwrap();
        assert!(matches!(c.read_line().await, Err(ClientError::Closed)));
    });
}

#[test]
fn resp_requests_and_a_deep_pipeline() {
    let server = TestServer::default();
    rt().block_on(async {
        let mut c = Client::connect("localhost", server.port, Protocol::Resp, T)
            .await
            .unwrap();
        assert_eq!(
            c.command_resp(&[b"SET", b"k", b"v"]).await.unwrap(),
            OwnedReply::Ok(b"OK".to_vec())
        );
        assert_eq!(
            c.command_resp(&[b"GET", b"k"]).await.unwrap(),
            OwnedReply::Bulk(b"v".to_vec())
        );
        assert_eq!(
            c.command_resp(&[b"GET", b"missing"]).await.unwrap(),
            OwnedReply::Nil
        );
        assert_eq!(
            c.command_resp(&[b"EXISTS", b"k"]).await.unwrap(),
            OwnedReply::Int(1)
        );
        // Far more than the socket buffers hold, written while replies are read.
        let n = 50_000;
        let mut req = Vec::new();
        for i in 0..n {
            let key = format!("key{i}");
            encode_put(Protocol::Resp, key.as_bytes(), &[b'x'; 200], 0, &mut req);
        }
        let replies = c.pipeline(&req, n).await.unwrap();
        assert_eq!(replies.len(), n);
        assert!(replies.iter().all(|r| *r == OwnedReply::Ok(b"OK".to_vec())));
    });
}

#[test]
fn auth_and_connection_errors() {
    let server = TestServer::with(|c| c.password = Some("pw".into()));
    rt().block_on(async {
        for proto in [Protocol::Text, Protocol::Resp] {
            let mut c = Client::connect("127.0.0.1", server.port, proto, T)
                .await
                .unwrap();
            assert!(c.auth("bad").await.unwrap().is_err());
            assert_eq!(c.auth("pw").await.unwrap(), Ok(()));
        }
        let e = Client::connect("127.0.0.1", closed_port(), Protocol::Text, T)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e}");
        assert!(
            e.to_string().starts_with("cannot connect to 127.0.0.1:"),
            "{e}"
        );
        let e = Client::connect("no-such-host.invalid", 1, Protocol::Text, T)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no-such-host.invalid"), "{e}");
    });
}
