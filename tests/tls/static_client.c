#include <openssl/ssl.h>
#include <openssl/err.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* static_client PORT PATH: GET PATH over TLS (OpenSSL linked statically) once a line is read
 * on stdin; prints the answer's length. */
int main(int argc, char **argv)
{
    char go[8];
    if (argc < 3 || !fgets(go, sizeof(go), stdin))
        return 2;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(atoi(argv[1]));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
        return 3;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1)
        return 4;
    char req[512];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             argv[2]);
    if (SSL_write(ssl, req, strlen(req)) <= 0)
        return 5;
    char buf[4096];
    long total = 0;
    int n;
    while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0)
        total += n;
    printf("%ld\n", total);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return 0;
}
