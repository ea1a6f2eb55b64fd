package main

// TLS for the grpc-go peer, from the environment (the TLS tests, tests/tls):
//
//	GO_GRPC_TLS_CERT, GO_GRPC_TLS_KEY   the server serves over TLS with this pair
//	GO_GRPC_TLS_CA                      the client dials over TLS trusting this CA
//
// Without them both sides speak h2c (insecure).

import (
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

func clientCreds() (grpc.DialOption, error) {
	ca := os.Getenv("GO_GRPC_TLS_CA")
	if ca == "" {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	c, err := credentials.NewClientTLSFromFile(ca, "localhost")
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(c), nil
}

func serverCreds() ([]grpc.ServerOption, error) {
	cert, key := os.Getenv("GO_GRPC_TLS_CERT"), os.Getenv("GO_GRPC_TLS_KEY")
	if cert == "" {
		return nil, nil
	}
	c, err := credentials.NewServerTLSFromFile(cert, key)
	if err != nil {
		return nil, err
	}
	return []grpc.ServerOption{grpc.Creds(c)}, nil
}
