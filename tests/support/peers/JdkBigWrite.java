// The JDK's own HTTP server answering every request with SIZE bytes written in one
// OutputStream.write(); with LOG, a line per request answered: METHOD PATH CLIENT_PORT
// BODY_BYTES. Usage: java JdkBigWrite.java PORT SIZE [LOG]
import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

public class JdkBigWrite {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        int size = Integer.parseInt(args[1]);
        byte[] body = new byte[size];
        for (int i = 0; i < size; i++) body[i] = (byte) (i % 251);
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
        server.createContext("/", ex -> {
            ex.getRequestBody().readAllBytes();
            ex.sendResponseHeaders(200, size);
            try (OutputStream os = ex.getResponseBody()) {
                os.write(body);
            }
            if (args.length > 2) {
                String line = ex.getRequestMethod() + " " + ex.getRequestURI().getPath() + " "
                        + ex.getRemoteAddress().getPort() + " " + size + "\n";
                synchronized (JdkBigWrite.class) {
                    Files.writeString(Path.of(args[2]), line, StandardOpenOption.CREATE,
                            StandardOpenOption.APPEND);
                }
            }
        });
        server.start();
        System.out.println("listening");
    }
}
