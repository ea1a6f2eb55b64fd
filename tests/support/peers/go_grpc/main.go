// A grpc-go server and client of raw-bytes methods (the test.Echo service of
// tests/support/peers/grpc_echo.py), and an HTTP/2 cleartext server (h2c: prior knowledge
// and HTTP/1.1 Upgrade), for the HTTP/2 decoder's tests.
//
//	go_grpc server-grpc PORT      serve test.Echo on 127.0.0.1:PORT
//	go_grpc client-grpc PORT      make every kind of call; print them as JSON lines
//	go_grpc server-h2c PORT DIR   serve DIR's files over h2c
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"
)

// rawCodec passes messages through as bytes (no generated code).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

const big = 16 << 20

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[len(b)-1-i] = b[i]
	}
	return out
}

var desc = grpc.ServiceDesc{
	ServiceName: "test.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Unary", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			out := reverse(in)
			return &out, nil
		}},
		{MethodName: "Fail", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			return nil, status.Errorf(codes.NotFound, "no such thing: %s ✓", in)
		}},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "ServerStream", ServerStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
			var in []byte
			if err := s.RecvMsg(&in); err != nil {
				return err
			}
			for _, suffix := range []string{"", "1", "2"} {
				out := append(append([]byte(nil), in...), suffix...)
				if err := s.SendMsg(&out); err != nil {
					return err
				}
			}
			return nil
		}},
		{StreamName: "ClientStream", ClientStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
			var all []byte
			for {
				var in []byte
				err := s.RecvMsg(&in)
				if errors.Is(err, io.EOF) {
					return s.SendMsg(&all)
				}
				if err != nil {
					return err
				}
				all = append(all, in...)
			}
		}},
		{StreamName: "Bidi", ClientStreams: true, ServerStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
			for {
				var in []byte
				err := s.RecvMsg(&in)
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				out := []byte(strings.ToUpper(string(in)))
				if err := s.SendMsg(&out); err != nil {
					return err
				}
			}
		}},
	},
}

type call struct {
	Method    string   `json:"method"`
	Requests  [][]byte `json:"requests"`
	Responses [][]byte `json:"responses"`
	Code      int      `json:"code"`
	Message   string   `json:"message"`
}

func client(port string) error {
	creds, err := clientCreds()
	if err != nil {
		return err
	}
	cc, err := grpc.NewClient("127.0.0.1:"+port, creds,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(big), grpc.MaxCallSendMsgSize(big)))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rng := rand.New(rand.NewSource(11))
	msg := func(n int) []byte { b := make([]byte, n); rng.Read(b); return b }
	var calls []call
	doUnary := func(method string, in []byte, opts ...grpc.CallOption) {
		var out []byte
		err := cc.Invoke(ctx, "/test.Echo/"+method, &in, &out, opts...)
		c := call{Method: method, Requests: [][]byte{in}, Code: int(status.Code(err)), Message: status.Convert(err).Message()}
		if err == nil {
			c.Responses = [][]byte{out}
		}
		calls = append(calls, c)
	}
	doUnary("Unary", msg(100))
	doUnary("Unary", msg(4<<20))
	doUnary("Unary", msg(3000), grpc.UseCompressor("gzip"))
	doUnary("Fail", []byte("thing"))
	stream := func(method string, server, clientStreams bool, ins [][]byte) {
		s, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: server, ClientStreams: clientStreams}, "/test.Echo/"+method)
		if err != nil {
			panic(err)
		}
		for _, in := range ins {
			in := in
			if err := s.SendMsg(&in); err != nil {
				panic(err)
			}
		}
		if err := s.CloseSend(); err != nil {
			panic(err)
		}
		c := call{Method: method, Requests: ins}
		for {
			var out []byte
			err := s.RecvMsg(&out)
			if err != nil {
				if !errors.Is(err, io.EOF) {
					c.Code = int(status.Code(err))
				}
				break
			}
			c.Responses = append(c.Responses, out)
		}
		calls = append(calls, c)
	}
	stream("ServerStream", true, false, [][]byte{msg(10)})
	stream("ClientStream", false, true, [][]byte{msg(1), {}, msg(5000), msg(70000)})
	stream("Bidi", true, true, [][]byte{[]byte("abc"), {}, []byte(strings.Repeat("xyz", 1000))})
	done := make(chan call)
	for i := 0; i < 40; i++ {
		in := msg(50 + i)
		go func() {
			var out []byte
			err := cc.Invoke(ctx, "/test.Echo/Unary", &in, &out)
			done <- call{Method: "Unary", Requests: [][]byte{in}, Responses: [][]byte{out}, Code: int(status.Code(err))}
		}()
	}
	for i := 0; i < 40; i++ {
		calls = append(calls, <-done)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, c := range calls {
		if err := enc.Encode(c); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	encoding.RegisterCodec(rawCodec{})
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: go_grpc server-grpc|client-grpc|server-h2c PORT [DIR]")
		os.Exit(2)
	}
	port := os.Args[2]
	var err error
	switch os.Args[1] {
	case "server-grpc":
		var opts []grpc.ServerOption
		if opts, err = serverCreds(); err != nil {
			break
		}
		opts = append(opts, grpc.MaxRecvMsgSize(big), grpc.MaxSendMsgSize(big))
		s := grpc.NewServer(opts...)
		s.RegisterService(&desc, struct{}{})
		err = serveGRPC(s, port)
	case "client-grpc":
		err = client(port)
	case "server-h2c":
		h := h2c.NewHandler(http.FileServer(http.Dir(os.Args[3])), &http2.Server{})
		err = http.ListenAndServe("127.0.0.1:"+port, h)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
