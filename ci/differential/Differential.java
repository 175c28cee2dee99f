// The differential suite: sends the same Kafka protocol requests to a real Apache Kafka
// and to a Runnel broker, renders both answers with Kafka's own JSON converters and
// compares them field by field, after normalising what legitimately differs (ports,
// cluster and topic ids, member ids, throttle times, error message wording, sizes).
//
// Cases come from cases.json (see ci/differential/README.md); deliberate differences from
// known-differences.json. Prints PASS or DIFF per case, and exits 1 if any difference is
// not listed (or a listed one no longer happens, so the list stays true).
//
// Usage: java -cp <kafka libs>:<classes> Differential --kafka HOST:PORT --runnel HOST:PORT
//          --cases cases.json --known known-differences.json [--only SUBSTRING] [--show]

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.BinaryNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;

import org.apache.kafka.common.compress.Compression;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.message.RequestHeaderData;
import org.apache.kafka.common.message.ResponseHeaderData;
import org.apache.kafka.common.protocol.ApiKeys;
import org.apache.kafka.common.protocol.ApiMessage;
import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.protocol.ObjectSerializationCache;
import org.apache.kafka.common.record.BaseRecords;
import org.apache.kafka.common.record.CompressionType;
import org.apache.kafka.common.record.MemoryRecords;
import org.apache.kafka.common.record.Record;
import org.apache.kafka.common.record.RecordBatch;
import org.apache.kafka.common.record.SimpleRecord;
import org.apache.kafka.common.record.TimestampType;

import java.io.DataInputStream;
import java.io.File;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class Differential {
    static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS);
    static final JsonNodeFactory NODES = JsonNodeFactory.instance;
    static final String ABSENT = "<absent>";
    static final String MESSAGE_PACKAGE = "org.apache.kafka.common.message.";

    /** Error codes that mean "not ready yet" and make a step marked "retry" ask again. */
    static final Set<Integer> RETRIABLE = Set.of(3, 5, 6, 7, 14, 15, 16, 89);

    /** Keys whose values are compared only as "set or not" (they name things each broker picks). */
    static final Set<String> OPAQUE = Set.of("clusterId", "memberId", "leader", "leaderId", "groupInstanceIdOpaque",
        "logDir", "sessionId", "incarnationId", "directoryId", "brokerEpoch", "producerIdOpaque", "clientHost",
        "assignedBrokerId", "producerId");
    /** Keys that are dropped before comparing (timing and sizes that no two brokers share). */
    static final Set<String> DROPPED = Set.of("throttleTimeMs", "port", "finalizedFeaturesEpoch", "totalBytes", "usableBytes");
    /** Error message texts: each broker words its own (null and "" included), the codes are compared. */
    static final Set<String> MESSAGES = Set.of("errorMessage", "message", "batchIndexErrorMessage");
    static final Pattern UUID_LIKE = Pattern.compile("[A-Za-z0-9_-]{22}");
    static final String ZERO_UUID = "AAAAAAAAAAAAAAAAAAAAAA";
    static final List<String> IDENTITY_KEYS = List.of("apiKey", "name", "topic", "topicName", "partitionIndex",
        "partition", "partitionId", "resourceName", "groupId", "configName", "logDir", "brokerId", "nodeId",
        "resourceType");

    static final class Broker {
        final String name;
        final String host;
        final int port;
        Socket socket;
        DataInputStream in;
        OutputStream out;
        int correlationId = 1;
        final Map<String, JsonNode> vars = new HashMap<>();

        Broker(String name, String address) {
            this.name = name;
            int colon = address.lastIndexOf(':');
            this.host = address.substring(0, colon);
            this.port = Integer.parseInt(address.substring(colon + 1));
        }

        void connect() throws IOException {
            close();
            socket = new Socket();
            socket.connect(new InetSocketAddress(host, port), 10_000);
            socket.setSoTimeout(30_000);
            socket.setTcpNoDelay(true);
            in = new DataInputStream(socket.getInputStream());
            out = socket.getOutputStream();
        }

        void close() {
            if (socket != null) {
                try {
                    socket.close();
                } catch (IOException ignored) {
                }
                socket = null;
            }
        }
    }

    /** One difference: where, and each broker's value (already normalised). */
    record Diff(String path, JsonNode kafka, JsonNode runnel) {
        ObjectNode toJson(String caseName) {
            ObjectNode n = NODES.objectNode();
            n.put("case", caseName);
            n.put("path", path);
            n.set("kafka", kafka);
            n.set("runnel", runnel);
            n.put("why", "TODO");
            return n;
        }
    }

    /**
     * A listed difference. "case" may end in "*" (a prefix); "path" may use "*" for one
     * segment and start with "**" for any depth (as ignore patterns do); "kafka" and
     * "runnel" may be left out to accept any value.
     */
    record Known(String caseName, String path, JsonNode kafka, JsonNode runnel, String why) {
        boolean matches(String c, Diff d) {
            boolean caseMatches = caseName.equals("*") || (caseName.endsWith("*") ? c.startsWith(caseName.substring(0, caseName.length() - 1))
                : caseName.equals(c));
            String p = d.path.replaceFirst("^step[0-9]+:", "");
            boolean pathMatches = path.equals(d.path) || path.equals(p)
                || ((path.contains("*")) && ignored(p, "", List.of(path)) && segments(path).length == segments(p).length)
                || (path.startsWith("**/") && p.endsWith(path.substring(2)));
            return caseMatches && pathMatches && (kafka == null || canonical(kafka).equals(canonical(d.kafka)))
                && (runnel == null || canonical(runnel).equals(canonical(d.runnel)));
        }
    }

    /** Numbers as one node type, whatever width the converter used. */
    static JsonNode canonical(JsonNode n) {
        try {
            return JSON.readTree(JSON.writeValueAsString(n));
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 3 && args[0].equals("--template")) {
            // The request body with every field at its default: a starting point for a case.
            ApiKeys key = apiKey(args[1]);
            short version = Short.parseShort(args[2]);
            String type = key.messageType.name;
            JsonNode t = withDefaults(NODES.objectNode(), Class.forName(MESSAGE_PACKAGE + type + "RequestData"),
                Class.forName(MESSAGE_PACKAGE + type + "RequestDataJsonConverter"), version);
            System.out.println(JSON.writeValueAsString(t));
            return;
        }
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--show")) {
                opts.put("show", "true");
            } else if (a.startsWith("--") && i + 1 < args.length) {
                opts.put(a.substring(2), args[++i]);
            } else {
                System.err.println("differential: unknown argument " + a);
                System.exit(2);
            }
        }
        for (String required : List.of("kafka", "runnel", "cases", "known")) {
            if (!opts.containsKey(required)) {
                System.err.println("differential: --" + required + " is required (see the usage at the top of Differential.java)");
                System.exit(2);
            }
        }
        Broker kafka = new Broker("kafka", opts.get("kafka"));
        Broker runnel = new Broker("runnel", opts.get("runnel"));
        kafka.connect();
        runnel.connect();

        JsonNode cases = JSON.readTree(new File(opts.get("cases"))).get("cases");
        List<Known> known = new ArrayList<>();
        for (JsonNode k : JSON.readTree(new File(opts.get("known"))).get("differences")) {
            if (!k.hasNonNull("why") || k.get("why").asText().isBlank() || k.get("why").asText().equals("TODO")) {
                throw new IllegalArgumentException("listed difference " + k + " needs a why: say why Runnel differs on purpose");
            }
            known.add(new Known(k.get("case").asText(), k.get("path").asText(), k.get("kafka"), k.get("runnel"),
                k.get("why").asText()));
        }
        String only = opts.get("only");
        boolean show = opts.containsKey("show");

        int compared = 0;
        int passed = 0;
        int listedSeen = 0;
        List<ObjectNode> unlisted = new ArrayList<>();
        Set<Known> used = new HashSet<>();
        Set<String> caseNames = new TreeSet<>();
        Set<String> ranCases = new HashSet<>();
        long start = System.nanoTime();
        for (JsonNode c : cases) {
            String name = c.get("name").asText();
            if (!caseNames.add(name)) {
                throw new IllegalArgumentException("case name " + name + " appears twice in the cases file; names must be unique");
            }
            if (only != null && !name.contains(only) && !c.path("setup").asBoolean(false)) {
                continue;
            }
            ranCases.add(name);
            List<Diff> diffs = new ArrayList<>();
            int comparedSteps = 0;
            JsonNode steps = c.get("steps");
            List<String> caseIgnore = strings(c.get("ignore"));
            for (int i = 0; i < steps.size(); i++) {
                JsonNode step = steps.get(i);
                boolean compare = step.path("compare").asBoolean(!c.path("setup").asBoolean(false));
                JsonNode kafkaAnswer;
                JsonNode runnelAnswer;
                try {
                    kafkaAnswer = run(kafka, step);
                } catch (Exception e) {
                    kafkaAnswer = NODES.textNode("<error: " + rootCause(e) + ">");
                }
                try {
                    runnelAnswer = run(runnel, step);
                } catch (Exception e) {
                    runnelAnswer = NODES.textNode("<error: " + rootCause(e) + ">");
                }
                if (!compare) {
                    continue;
                }
                comparedSteps++;
                List<String> ignore = new ArrayList<>(caseIgnore);
                ignore.addAll(strings(step.get("ignore")));
                JsonNode k = normalise(kafkaAnswer);
                JsonNode r = normalise(runnelAnswer);
                String prefix = steps.size() > 1 && countCompared(c) > 1 ? "step" + i + ":" : "";
                List<Diff> stepDiffs = new ArrayList<>();
                diff(prefix, k, r, stepDiffs);
                for (Diff d : stepDiffs) {
                    if (!ignored(d.path, prefix, ignore)) {
                        diffs.add(d);
                    }
                }
                if (show) {
                    System.out.println("  " + name + " step " + i + " kafka:  " + JSON.writeValueAsString(k));
                    System.out.println("  " + name + " step " + i + " runnel: " + JSON.writeValueAsString(r));
                }
            }
            if (comparedSteps == 0) {
                continue;
            }
            compared++;
            List<Diff> listedHere = new ArrayList<>();
            List<Diff> unlistedHere = new ArrayList<>();
            for (Diff d : diffs) {
                Known match = null;
                for (Known kn : known) {
                    if (kn.matches(name, d)) {
                        match = kn;
                        break;
                    }
                }
                if (match != null) {
                    used.add(match);
                    listedHere.add(d);
                } else {
                    unlistedHere.add(d);
                }
            }
            listedSeen += listedHere.size();
            if (unlistedHere.isEmpty()) {
                passed++;
                System.out.println("PASS " + name + (listedHere.isEmpty() ? "" : " (" + listedHere.size() + " listed difference" + (listedHere.size() == 1 ? "" : "s") + ")"));
            } else {
                System.out.println("DIFF " + name);
                for (Diff d : unlistedHere) {
                    System.out.println("     " + d.path);
                    System.out.println("       kafka:  " + JSON.writeValueAsString(d.kafka));
                    System.out.println("       runnel: " + JSON.writeValueAsString(d.runnel));
                    unlisted.add(d.toJson(name));
                }
            }
        }
        List<Known> stale = new ArrayList<>();
        for (Known kn : known) {
            boolean ran = kn.caseName.endsWith("*") ? ranCases.stream().anyMatch(n -> n.startsWith(kn.caseName.substring(0, kn.caseName.length() - 1)))
                : ranCases.contains(kn.caseName);
            if (ran && !used.contains(kn)) {
                stale.add(kn);
            }
        }
        kafka.close();
        runnel.close();
        double seconds = (System.nanoTime() - start) / 1e9;
        System.out.println();
        System.out.printf("differential: %d cases compared, %d passed, %d with unlisted differences; %d listed differences seen (%d entries in the list); %.1f s%n",
            compared, passed, compared - passed, listedSeen, known.size(), seconds);
        for (Known kn : stale) {
            System.out.println("differential: listed difference no longer seen (remove it from the list): " + kn.caseName + " " + kn.path);
        }
        if (!unlisted.isEmpty()) {
            System.out.println("differential: unlisted differences; fix Runnel, or list each deliberate one in known-differences.json with why:");
            for (ObjectNode u : unlisted) {
                System.out.println("  " + JSON.writeValueAsString(u) + ",");
            }
        }
        System.exit(unlisted.isEmpty() && stale.isEmpty() ? 0 : 1);
    }

    static String rootCause(Throwable e) {
        while (e.getCause() != null) {
            e = e.getCause();
        }
        return e.toString();
    }

    static int countCompared(JsonNode c) {
        int n = 0;
        for (JsonNode s : c.get("steps")) {
            if (s.path("compare").asBoolean(!c.path("setup").asBoolean(false))) {
                n++;
            }
        }
        return n;
    }

    static List<String> strings(JsonNode n) {
        List<String> out = new ArrayList<>();
        if (n != null) {
            for (JsonNode s : n) {
                out.add(s.asText());
            }
        }
        return out;
    }

    /** An ignore pattern is a path where "*" matches one segment; it covers everything under it. */
    static boolean ignored(String path, String prefix, List<String> patterns) {
        String p = path.substring(prefix.length());
        String[] segs = segments(p);
        for (String pattern : patterns) {
            if (pattern.startsWith("**/")) {
                String name = pattern.substring(3);
                for (String seg : segs) {
                    if (seg.equals(name) || seg.replaceAll("\\[.*\\]$", "").equals(name)) {
                        return true;
                    }
                }
                continue;
            }
            String[] want = segments(pattern);
            if (want.length > segs.length) {
                continue;
            }
            boolean ok = true;
            for (int i = 0; i < want.length && ok; i++) {
                ok = want[i].equals("*") || want[i].equals(segs[i]) || want[i].equals(segs[i].replaceAll("\\[.*\\]$", ""));
            }
            if (ok) {
                return true;
            }
        }
        return false;
    }

    static String[] segments(String path) {
        List<String> out = new ArrayList<>();
        for (String s : path.split("/")) {
            if (!s.isEmpty()) {
                out.add(s);
            }
        }
        return out.toArray(new String[0]);
    }

    // ---- running a step -------------------------------------------------------------

    static JsonNode run(Broker b, JsonNode step) throws Exception {
        String kind = step.path("kind").asText("request");
        switch (kind) {
            case "sleep":
                Thread.sleep(step.get("ms").asLong());
                return NODES.nullNode();
            case "waitTopics":
                return waitTopics(b, step);
            case "request":
                break;
            default:
                throw new IllegalArgumentException("unknown step kind " + kind);
        }
        boolean retry = step.path("retry").asBoolean(false);
        long deadline = System.currentTimeMillis() + 30_000;
        while (true) {
            JsonNode answer = request(b, step);
            if (retry && System.currentTimeMillis() < deadline && hasRetriableError(answer)) {
                Thread.sleep(200);
                continue;
            }
            JsonNode save = step.get("save");
            if (save != null) {
                for (Iterator<Map.Entry<String, JsonNode>> it = save.fields(); it.hasNext(); ) {
                    Map.Entry<String, JsonNode> e = it.next();
                    JsonNode v = answer.at(e.getValue().asText());
                    if (v.isMissingNode()) {
                        throw new IllegalStateException(b.name + " answered without " + e.getValue().asText() + " to save as " + e.getKey() + ": " + answer);
                    }
                    b.vars.put(e.getKey(), v);
                }
            }
            return answer;
        }
    }

    static boolean hasRetriableError(JsonNode n) {
        if (n.isObject()) {
            JsonNode code = n.get("errorCode");
            if (code != null && RETRIABLE.contains(code.asInt())) {
                return true;
            }
            for (JsonNode child : n) {
                if (hasRetriableError(child)) {
                    return true;
                }
            }
        } else if (n.isArray()) {
            for (JsonNode child : n) {
                if (hasRetriableError(child)) {
                    return true;
                }
            }
        }
        return false;
    }

    /** Asks Metadata until every named topic has no error and every partition a leader. */
    static JsonNode waitTopics(Broker b, JsonNode step) throws Exception {
        ObjectNode req = NODES.objectNode();
        ArrayNode topics = req.putArray("topics");
        for (JsonNode t : step.get("topics")) {
            topics.addObject().put("name", t.asText()).put("topicId", ZERO_UUID);
        }
        req.put("allowAutoTopicCreation", false);
        ObjectNode s = NODES.objectNode();
        s.put("api", "Metadata");
        s.put("version", 12);
        s.set("request", req);
        long deadline = System.currentTimeMillis() + 30_000;
        while (true) {
            JsonNode answer = request(b, s);
            boolean ready = true;
            for (JsonNode t : answer.get("topics")) {
                if (t.get("errorCode").asInt() != 0) {
                    ready = false;
                }
                for (JsonNode p : t.get("partitions")) {
                    if (p.get("errorCode").asInt() != 0 || p.get("leaderId").asInt() < 0) {
                        ready = false;
                    }
                }
            }
            if (ready) {
                return answer;
            }
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException(b.name + ": topics " + step.get("topics") + " not ready within 30 s: " + answer);
            }
            Thread.sleep(100);
        }
    }

    static ApiKeys apiKey(String name) {
        for (ApiKeys k : ApiKeys.values()) {
            if (k.name.equals(name) || k.name().equals(name)) {
                return k;
            }
        }
        throw new IllegalArgumentException("no Kafka API is called " + name);
    }

    static JsonNode request(Broker b, JsonNode step) throws Exception {
        ApiKeys key = apiKey(step.get("api").asText());
        short version = (short) step.get("version").asInt();
        String type = key.messageType.name;
        Class<?> dataClass = Class.forName(MESSAGE_PACKAGE + type + "RequestData");
        Class<?> converter = Class.forName(MESSAGE_PACKAGE + type + "RequestDataJsonConverter");
        JsonNode body = expand(substitute(step.path("request").isMissingNode() ? NODES.objectNode() : step.get("request"), b.vars));
        JsonNode full = withDefaults(body, dataClass, converter, version);
        ApiMessage request = (ApiMessage) converter.getMethod("read", JsonNode.class, short.class).invoke(null, full, version);

        RequestHeaderData header = new RequestHeaderData()
            .setRequestApiKey(key.id)
            .setRequestApiVersion((short) step.path("claimVersion").asInt(version))
            .setCorrelationId(b.correlationId++)
            .setClientId(step.path("clientId").asText("differential"));
        short headerVersion = key.requestHeaderVersion(version);
        ObjectSerializationCache cache = new ObjectSerializationCache();
        int size = header.size(cache, headerVersion) + request.size(cache, version);
        ByteBuffer buf = ByteBuffer.allocate(4 + size);
        buf.putInt(size);
        ByteBufferAccessor w = new ByteBufferAccessor(buf);
        header.write(w, cache, headerVersion);
        request.write(w, cache, version);
        if (b.socket == null) {
            b.connect();
        }
        try {
            b.out.write(buf.array());
            b.out.flush();
            boolean noAnswer = key == ApiKeys.PRODUCE && full.path("acks").asInt(1) == 0;
            if (noAnswer) {
                Thread.sleep(300);
                return NODES.textNode("<no answer: acks=0>");
            }
            int length = b.in.readInt();
            byte[] bytes = new byte[length];
            b.in.readFully(bytes);
            ByteBufferAccessor r = new ByteBufferAccessor(ByteBuffer.wrap(bytes));
            ResponseHeaderData responseHeader = new ResponseHeaderData(r, key.responseHeaderVersion(version));
            if (responseHeader.correlationId() != header.correlationId()) {
                throw new IllegalStateException(b.name + " answered correlation id " + responseHeader.correlationId() + " to " + header.correlationId());
            }
            ApiMessage response = key.messageType.newResponse();
            short readVersion = version;
            if (key == ApiKeys.API_VERSIONS && version > 0 && looksLikeV0Error(bytes, r)) {
                readVersion = 0;
            }
            response.read(r, readVersion);
            Class<?> rc = Class.forName(MESSAGE_PACKAGE + type + "ResponseDataJsonConverter");
            JsonNode json = (JsonNode) rc.getMethod("write", response.getClass(), short.class, boolean.class).invoke(null, response, readVersion, false);
            addRecords(response, json);
            return json;
        } catch (IOException e) {
            b.close();
            return NODES.textNode("<connection closed>");
        }
    }

    /** An ApiVersions answer to a version the broker does not know comes in v0 (KIP-511). */
    static boolean looksLikeV0Error(byte[] bytes, ByteBufferAccessor r) {
        ByteBuffer bb = ByteBuffer.wrap(bytes);
        bb.position(4);
        return bb.remaining() >= 2 && bb.getShort() == 35;
    }

    static JsonNode substitute(JsonNode n, Map<String, JsonNode> vars) {
        if (n.isTextual()) {
            String s = n.asText();
            if (s.startsWith("${") && s.endsWith("}")) {
                JsonNode v = vars.get(s.substring(2, s.length() - 1));
                if (v == null) {
                    throw new IllegalArgumentException("no saved value " + s + " (a step before must save it)");
                }
                return v;
            }
            if (s.startsWith("$repeat:")) {
                String[] parts = s.split(":", 3);
                return NODES.textNode(parts[2].repeat(Integer.parseInt(parts[1])));
            }
            return n;
        }
        if (n.isObject()) {
            ObjectNode out = NODES.objectNode();
            n.fields().forEachRemaining(e -> out.set(e.getKey(), substitute(e.getValue(), vars)));
            return out;
        }
        if (n.isArray()) {
            ArrayNode out = NODES.arrayNode();
            n.forEach(e -> out.add(substitute(e, vars)));
            return out;
        }
        return n;
    }

    /** Replaces {"$records": {...}} with the bytes of the record batch it describes. */
    static JsonNode expand(JsonNode n) {
        if (n.isObject()) {
            if (n.has("$records")) {
                return NODES.binaryNode(buildRecords(n.get("$records")));
            }
            ObjectNode out = NODES.objectNode();
            n.fields().forEachRemaining(e -> out.set(e.getKey(), expand(e.getValue())));
            return out;
        }
        if (n.isArray()) {
            ArrayNode out = NODES.arrayNode();
            n.forEach(e -> out.add(expand(e)));
            return out;
        }
        return n;
    }

    static byte[] buildRecords(JsonNode spec) {
        List<SimpleRecord> records = new ArrayList<>();
        for (JsonNode r : spec.get("records")) {
            byte[] key = r.hasNonNull("key") ? r.get("key").asText().getBytes(StandardCharsets.UTF_8) : null;
            byte[] value;
            if (r.has("valueSize")) {
                value = new byte[r.get("valueSize").asInt()];
                Arrays.fill(value, (byte) 'x');
            } else {
                value = r.hasNonNull("value") ? r.get("value").asText().getBytes(StandardCharsets.UTF_8) : null;
            }
            List<Header> headers = new ArrayList<>();
            if (r.has("headers")) {
                r.get("headers").fields().forEachRemaining(h -> headers.add(new RecordHeader(h.getKey(),
                    h.getValue().isNull() ? null : h.getValue().asText().getBytes(StandardCharsets.UTF_8))));
            }
            long timestamp = r.path("timestamp").asText().equals("now") ? System.currentTimeMillis() : r.path("timestamp").asLong(1_700_000_000_000L);
            records.add(new SimpleRecord(timestamp, key, value, headers.toArray(new Header[0])));
        }
        Compression compression = Compression.of(spec.path("compression").asText("none")).build();
        byte magic = (byte) spec.path("magic").asInt(RecordBatch.MAGIC_VALUE_V2);
        MemoryRecords built = MemoryRecords.withRecords(magic, 0L, compression, TimestampType.CREATE_TIME,
            spec.path("producerId").asLong(-1), (short) spec.path("producerEpoch").asInt(-1),
            spec.path("baseSequence").asInt(-1), 0, false, records.toArray(new SimpleRecord[0]));
        ByteBuffer bb = built.buffer();
        byte[] out = new byte[bb.remaining()];
        bb.get(out);
        return out;
    }

    // ---- defaults: a case names only the fields it cares about ----------------------

    static JsonNode withDefaults(JsonNode given, Class<?> dataClass, Class<?> converter, short version) throws Exception {
        Object defaults = dataClass.getConstructor().newInstance();
        Method write = converter.getMethod("write", dataClass, short.class);
        ObjectNode out = (ObjectNode) write.invoke(null, defaults, version);
        if (!given.isObject()) {
            throw new IllegalArgumentException("a request body must be a JSON object, not " + given);
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = given.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String field = e.getKey();
            JsonNode value = e.getValue();
            Class<?> element = elementClass(dataClass, field);
            if (element != null && value.isArray()) {
                Class<?> elementConverter = nestedConverter(converter, element);
                ArrayNode arr = NODES.arrayNode();
                for (JsonNode v : value) {
                    arr.add(v.isObject() && elementConverter != null ? withDefaults(v, element, elementConverter, version) : v);
                }
                out.set(field, arr);
            } else if (element != null && value.isObject()) {
                Class<?> elementConverter = nestedConverter(converter, element);
                out.set(field, elementConverter != null ? withDefaults(value, element, elementConverter, version) : value);
            } else {
                out.set(field, value);
            }
        }
        return out;
    }

    /** The message class of a struct field, or of the elements of an array-of-structs field. */
    static Class<?> elementClass(Class<?> dataClass, String field) {
        Field f;
        try {
            f = dataClass.getDeclaredField(field);
        } catch (NoSuchFieldException e) {
            return null;
        }
        Type t = f.getGenericType();
        if (t instanceof ParameterizedType pt && pt.getActualTypeArguments().length == 1 && pt.getActualTypeArguments()[0] instanceof Class<?> c) {
            return isMessage(c) ? c : null;
        }
        if (t instanceof Class<?> c) {
            if (isMessage(c)) {
                return c;
            }
            Type sup = c.getGenericSuperclass();
            if (sup instanceof ParameterizedType pt && pt.getActualTypeArguments()[0] instanceof Class<?> e) {
                return isMessage(e) ? e : null;
            }
        }
        return null;
    }

    static boolean isMessage(Class<?> c) {
        return org.apache.kafka.common.protocol.Message.class.isAssignableFrom(c);
    }

    static Class<?> nestedConverter(Class<?> converter, Class<?> element) {
        Class<?> top = converter;
        while (top.getEnclosingClass() != null) {
            top = top.getEnclosingClass();
        }
        for (Class<?> c : top.getDeclaredClasses()) {
            if (c.getSimpleName().equals(element.getSimpleName() + "JsonConverter")) {
                return c;
            }
        }
        return null;
    }

    // ---- records in answers -----------------------------------------------------------

    /** Puts the decoded batches where the converter wrote only "recordsSizeInBytes". */
    static void addRecords(Object message, JsonNode json) throws Exception {
        if (message == null || json == null || !json.isObject()) {
            return;
        }
        ObjectNode node = (ObjectNode) json;
        for (Field f : message.getClass().getDeclaredFields()) {
            if (Modifier.isStatic(f.getModifiers())) {
                continue;
            }
            f.setAccessible(true);
            Object v = f.get(message);
            if (v instanceof BaseRecords records) {
                node.remove(f.getName() + "SizeInBytes");
                node.set(f.getName(), decode(records));
            } else if (v instanceof Collection<?> list && node.get(f.getName()) instanceof ArrayNode arr) {
                int i = 0;
                for (Object e : list) {
                    if (i < arr.size()) {
                        addRecords(e, arr.get(i));
                    }
                    i++;
                }
            } else if (v != null && isMessage(v.getClass()) && node.has(f.getName())) {
                addRecords(v, node.get(f.getName()));
            }
        }
    }

    static JsonNode decode(BaseRecords records) {
        if (!(records instanceof MemoryRecords mr)) {
            return NODES.textNode("<records of " + records.getClass().getSimpleName() + ">");
        }
        ArrayNode batches = NODES.arrayNode();
        for (RecordBatch batch : mr.batches()) {
            ObjectNode b = batches.addObject();
            b.put("baseOffset", batch.baseOffset());
            b.put("lastOffset", batch.lastOffset());
            b.put("magic", batch.magic());
            b.put("compression", batch.compressionType().name);
            b.put("timestampType", batch.timestampType().name);
            b.put("maxTimestamp", batch.maxTimestamp());
            b.put("producerId", batch.producerId());
            b.put("producerEpoch", batch.producerEpoch());
            b.put("baseSequence", batch.baseSequence());
            b.put("transactional", batch.isTransactional());
            b.put("control", batch.isControlBatch());
            b.put("partitionLeaderEpoch", batch.partitionLeaderEpoch());
            ArrayNode rs = b.putArray("records");
            for (Record r : batch) {
                ObjectNode o = rs.addObject();
                o.put("offset", r.offset());
                o.put("timestamp", r.timestamp());
                o.set("key", bytes(r.key()));
                o.set("value", bytes(r.value()));
                ObjectNode h = o.putObject("headers");
                for (Header header : r.headers()) {
                    h.set(header.key(), header.value() == null ? NODES.nullNode() : bytes(ByteBuffer.wrap(header.value())));
                }
            }
        }
        return batches;
    }

    static JsonNode bytes(ByteBuffer b) {
        if (b == null) {
            return NODES.nullNode();
        }
        byte[] a = new byte[b.remaining()];
        b.duplicate().get(a);
        if (a.length > 64) {
            return NODES.textNode("<" + a.length + " bytes>");
        }
        return NODES.textNode(new String(a, StandardCharsets.UTF_8));
    }

    // ---- normalising and comparing ------------------------------------------------------

    static JsonNode normalise(JsonNode n) {
        if (n.isObject()) {
            ObjectNode out = NODES.objectNode();
            for (Iterator<Map.Entry<String, JsonNode>> it = n.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                String k = e.getKey();
                JsonNode v = e.getValue();
                if (DROPPED.contains(k) || MESSAGES.contains(k)) {
                    continue;
                }
                if (OPAQUE.contains(k) && v.isValueNode() && !v.isNull()) {
                    String s = v.asText();
                    boolean unset = s.isEmpty() || s.equals("-1") || (s.equals("0") && !k.equals("producerId"));
                    out.set(k, unset ? v : NODES.textNode("<" + k + ">"));
                } else if (v.isTextual() && UUID_LIKE.matcher(v.asText()).matches() && k.toLowerCase().endsWith("id")) {
                    out.set(k, NODES.textNode(v.asText().equals(ZERO_UUID) ? "<zero uuid>" : "<uuid>"));
                } else {
                    out.set(k, normalise(v));
                }
            }
            return out;
        }
        if (n.isArray()) {
            ArrayNode out = NODES.arrayNode();
            n.forEach(e -> out.add(normalise(e)));
            return out;
        }
        if (n.isTextual() && LISTENER_PORT.matcher(n.asText()).find()) {
            return NODES.textNode(LISTENER_PORT.matcher(n.asText()).replaceAll("$1:<port>"));
        }
        return n;
    }

    /** Ports in listener strings (PLAINTEXT://127.0.0.1:45092): each broker has its own. */
    static final Pattern LISTENER_PORT = Pattern.compile("(://[^:/,]*):[0-9]+");

    static void diff(String path, JsonNode k, JsonNode r, List<Diff> out) {
        if (k.isObject() && r.isObject()) {
            Set<String> keys = new TreeSet<>();
            k.fieldNames().forEachRemaining(keys::add);
            r.fieldNames().forEachRemaining(keys::add);
            for (String key : keys) {
                JsonNode kv = k.get(key);
                JsonNode rv = r.get(key);
                String p = path + "/" + key;
                if (kv == null || rv == null) {
                    out.add(new Diff(p, kv == null ? NODES.textNode(ABSENT) : kv, rv == null ? NODES.textNode(ABSENT) : rv));
                } else {
                    diff(p, kv, rv, out);
                }
            }
            return;
        }
        if (k.isArray() && r.isArray()) {
            String id = identityKey(k, r);
            if (id != null) {
                Map<String, JsonNode> km = byKey(k, id);
                Map<String, JsonNode> rm = byKey(r, id);
                Set<String> all = new TreeSet<>(Differential::compareKeys);
                all.addAll(km.keySet());
                all.addAll(rm.keySet());
                for (String v : all) {
                    String p = path + "[" + id + "=" + v + "]";
                    JsonNode kv = km.get(v);
                    JsonNode rv = rm.get(v);
                    if (kv == null || rv == null) {
                        out.add(new Diff(p, kv == null ? NODES.textNode(ABSENT) : kv, rv == null ? NODES.textNode(ABSENT) : rv));
                    } else {
                        diff(p, kv, rv, out);
                    }
                }
                return;
            }
            if (k.size() != r.size()) {
                out.add(new Diff(path, k, r));
                return;
            }
            for (int i = 0; i < k.size(); i++) {
                diff(path + "/" + i, k.get(i), r.get(i), out);
            }
            return;
        }
        if (!k.equals(r)) {
            out.add(new Diff(path.isEmpty() ? "/" : path, k, r));
        }
    }

    static int compareKeys(String a, String b) {
        try {
            return Long.compare(Long.parseLong(a), Long.parseLong(b));
        } catch (NumberFormatException e) {
            return a.compareTo(b);
        }
    }

    /** A field every element of both arrays has, with values unique in each array. */
    static String identityKey(JsonNode k, JsonNode r) {
        if (k.size() + r.size() == 0) {
            return null;
        }
        for (String id : IDENTITY_KEYS) {
            if (uniqueKey(k, id) && uniqueKey(r, id)) {
                return id;
            }
        }
        return null;
    }

    static boolean uniqueKey(JsonNode arr, String id) {
        Set<String> seen = new HashSet<>();
        for (JsonNode e : arr) {
            if (!e.isObject() || !e.has(id) || !e.get(id).isValueNode() || !seen.add(e.get(id).asText())) {
                return false;
            }
        }
        return true;
    }

    static Map<String, JsonNode> byKey(JsonNode arr, String id) {
        Map<String, JsonNode> m = new LinkedHashMap<>();
        for (JsonNode e : arr) {
            m.put(e.get(id).asText(), e);
        }
        return m;
    }
}
