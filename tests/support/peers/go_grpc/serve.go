package main

import (
	"net"

	"google.golang.org/grpc"
)

func serveGRPC(s *grpc.Server, port string) error {
	lis, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		return err
	}
	return s.Serve(lis)
}
