import com.sun.net.httpserver.*;
import java.io.*;
import java.net.*;
import java.net.http.*;
import java.util.*;

/** Server: java JdkPeer server PORT (prints "ready"); client: java JdkPeer client URL N */
public class JdkPeer {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("server")) {
            HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(args[1])), 16);
            s.createContext("/early", ex -> {
                // answers after 64 KiB of the body, then reads the rest
                byte[] first = ex.getRequestBody().readNBytes(65536);
                byte[] out = "early".getBytes();
                ex.sendResponseHeaders(200, out.length);
                ex.getResponseBody().write(out);
                ex.getResponseBody().flush();
                int n = first.length + ex.getRequestBody().readAllBytes().length;
                System.out.println("LOG " + ex.getRequestMethod() + " /early " + n + " " + out.length);
                ex.close();
            });
            s.createContext("/", ex -> {
                byte[] in = ex.getRequestBody().readAllBytes();
                String path = ex.getRequestURI().getPath();
                byte[] out = ("got " + in.length + " for " + path).getBytes();
                System.out.println("LOG " + ex.getRequestMethod() + " " + path + " " + in.length + " " + out.length);
                ex.sendResponseHeaders(200, out.length);
                ex.getResponseBody().write(out);
                ex.close();
            });
            s.start();
            System.out.println("ready");
        } else {
            HttpClient c = HttpClient.newHttpClient();
            String base = args[1];
            int n = Integer.parseInt(args[2]);
            HttpResponse<String> r = c.send(HttpRequest.newBuilder(URI.create(base + "/first")).build(), HttpResponse.BodyHandlers.ofString());
            System.out.println("RES " + r.statusCode() + " " + r.body());
            byte[] big = new byte[n];
            Arrays.fill(big, (byte) 'p');
            r = c.send(HttpRequest.newBuilder(URI.create(base + "/upload")).POST(HttpRequest.BodyPublishers.ofByteArray(big)).build(), HttpResponse.BodyHandlers.ofString());
            System.out.println("RES " + r.statusCode() + " " + r.body());
            r = c.send(HttpRequest.newBuilder(URI.create(base + "/early")).POST(HttpRequest.BodyPublishers.ofByteArray(big)).build(), HttpResponse.BodyHandlers.ofString());
            System.out.println("RES " + r.statusCode() + " " + r.body());
            r = c.send(HttpRequest.newBuilder(URI.create(base + "/after")).build(), HttpResponse.BodyHandlers.ofString());
            System.out.println("RES " + r.statusCode() + " " + r.body());
        }
    }
}
