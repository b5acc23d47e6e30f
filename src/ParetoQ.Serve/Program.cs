using System.CommandLine;
using ParetoQ.CommandLine;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Serve;

/// <summary>paretoq-serve: an OpenAI-compatible HTTP server for one .pq model.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var model = new Option<string>("--model", "-m") { Description = "The .pq model file", Required = true };
        var host = new Option<string>("--host")
        {
            Description = "Address to listen on (loopback by default; 0.0.0.0 exposes the server to the network)",
            DefaultValueFactory = _ => "127.0.0.1",
        };
        var port = new Option<int>("--port") { Description = "TCP port", DefaultValueFactory = _ => 8080 };
        var parallel = new Option<int>("--parallel", "-np")
            { Description = "Sessions generating at once, each with its own KV cache", DefaultValueFactory = _ => 1 };
        var queue = new Option<int>("--queue")
        {
            Description = "Requests that may wait for a session; more get 503 with Retry-After",
            DefaultValueFactory = _ => 16,
        };
        var context = new Option<int>("--context", "-c")
            { Description = "Context length per session (default: min(model maximum, 4096))" };
        var threads = new Option<int>("--threads", "-t") { Description = "Worker threads (default: one per core)" };
        var chatOverflow = new Option<string>("--chat-overflow")
        {
            Description = "A chat longer than the context: refuse (400 context_length_exceeded, as OpenAI does) or " +
                "truncate (drop the oldest turns, the system message stays; X-Dropped-Messages says how many)",
            DefaultValueFactory = _ => "refuse",
        };
        chatOverflow.AcceptOnlyFromAmong("refuse", "truncate");
        var apiKey = new Option<string?>("--api-key")
            { Description = "Require 'Authorization: Bearer KEY' on /v1 (default: PARETOQ_API_KEY, else none)" };
        host.Check(v =>
        {
            if (v != "localhost" && !System.Net.IPAddress.TryParse(v, out _))
                throw new ArgumentException($"--host '{v}' is not an IP address (or localhost)");
        });
        port.Check(v => { if (v is < 0 or > 65535) throw new ArgumentException($"--port {v} must be in [0, 65535]"); });
        parallel.Check(v =>
        {
            if (v is < 1 or > 64) throw new ArgumentException($"--parallel {v} must be in [1, 64]");
        });
        queue.Check(v => { if (v is < 0 or > 4096) throw new ArgumentException($"--queue {v} must be in [0, 4096]"); });
        context.Check(v => { if (v < 0) throw new ArgumentException($"--context {v} must be ≥ 0"); });
        threads.Check(v => ThreadCount.Check(v, "--threads"));
        var root = new RootCommand("""
            paretoq-serve: an OpenAI-compatible server for a ParetoQ low-bit model (.pq)

            Endpoints: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions (stream: true for
            server-sent events). Example:
              paretoq-serve --model models/stories260K-2bit.pq --port 8080 --parallel 4
              curl http://127.0.0.1:8080/v1/completions -H 'Content-Type: application/json' \
                -d '{"model": "stories260K-2bit", "prompt": "Once upon a time", "max_tokens": 64}'
            """)
        {
            model, host, port, parallel, queue, context, threads, chatOverflow, apiKey,
        };
        root.SetAction(parse => Run(new ServerOptions
        {
            Model = parse.GetValue(model)!, Host = parse.GetValue(host)!, Port = parse.GetValue(port),
            Parallel = parse.GetValue(parallel), Queue = parse.GetValue(queue), Context = parse.GetValue(context),
            Threads = parse.GetValue(threads), TruncateChats = parse.GetValue(chatOverflow) == "truncate",
            ApiKey = parse.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("PARETOQ_API_KEY"),
        }));
        return ProgramErrors.Invoke(root, args, "paretoq-serve");
    }

    private static int Run(ServerOptions options)
    {
        InputFile.Check(options.Model, problem => new PqFormatException(options.Model, null, problem));
        return RunAsync(options).GetAwaiter().GetResult();
    }

    private static async Task<int> RunAsync(ServerOptions options)
    {
        await using var server = await OpenAiServer.StartAsync(options);
        string key = options.ApiKey is null ? "" : ", API key required";
        Console.Error.WriteLine($"paretoq-serve: {Path.GetFileName(options.Model)} on {server.BaseAddress} " +
            $"({options.Parallel} session(s), queue {options.Queue}{key}); Ctrl+C stops");
        await server.WaitForShutdownAsync();
        return 0;
    }
}
