using System.CommandLine;
using ParetoQ.CommandLine;

namespace ParetoQ.Fuzz;

/// <summary>paretoq-fuzz: runs <see cref="Fuzzer"/> over one format or all, and exits 1 if any case broke the
/// contract.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var format = new Option<string>("--format") { Description = "pq, safetensors, torch, config, tokenizer, " +
            "gguf, llama2c or all",
            DefaultValueFactory = _ => "all" };
        format.AcceptOnlyFromAmong([.. Fuzzer.Formats, "all"]);
        var cases = new Option<int>("--cases") { Description = "Cases per format", DefaultValueFactory = _ => 10_000 };
        cases.Check(n => { if (n < 1) throw new ArgumentException($"--cases {n} must be at least 1"); });
        var seed = new Option<int>("--seed") { Description = "Random seed; the same seed gives the same cases",
            DefaultValueFactory = _ => 1 };
        var timeLimit = new Option<double>("--time-limit") { Description = "Seconds one case may take",
            DefaultValueFactory = _ => Fuzzer.DefaultLimits.PerCase.TotalSeconds };
        timeLimit.Check(s => { if (!(s > 0)) throw new ArgumentException($"--time-limit {s} must be positive"); });
        var memory = new Option<double>("--memory-multiple")
        {
            Description = "Bytes one case may allocate, as a multiple of its input's size (plus 16 MiB)",
            DefaultValueFactory = _ => Fuzzer.DefaultLimits.MemoryMultiple,
        };
        memory.Check(m => { if (!(m > 0)) throw new ArgumentException($"--memory-multiple {m} must be positive"); });
        var findings = new Option<string>("--findings")
        {
            Description = "Where inputs that broke the contract are saved", DefaultValueFactory = _ => "fuzz-findings",
        };

        var root = new RootCommand(
            "paretoq-fuzz: mutation fuzzing of the .pq, safetensors, PyTorch, config.json and tokenizer.json readers")
        {
            format, cases, seed, timeLimit, memory, findings,
        };
        root.SetAction(p =>
        {
            var limits = Fuzzer.DefaultLimits with
            {
                PerCase = TimeSpan.FromSeconds(p.GetValue(timeLimit)), MemoryMultiple = p.GetValue(memory),
            };
            string work = Directory.CreateTempSubdirectory("paretoq-fuzz-").FullName;
            int broken = 0;
            try
            {
                string chosen = p.GetValue(format)!;
                foreach (string f in chosen == "all" ? Fuzzer.Formats : [chosen])
                {
                    var r = Fuzzer.Run(f, p.GetValue(cases), p.GetValue(seed), limits, Path.Combine(work, f),
                        p.GetValue(findings));
                    Console.WriteLine($"{f,-12} {r.Cases} cases in {r.Seconds:F1} s: {r.Accepted} accepted, " +
                        $"{r.Refused} refused, {r.Findings.Count} broke the contract; most allocated by one case " +
                        $"{r.MaxAllocatedBytes / 1e6:F1} MB (seed file {r.SeedBytes} bytes)");
                    foreach (var finding in r.Findings.Take(20))
                        Console.WriteLine($"  case {finding.Case}: {finding.Problem}" +
                            (finding.SavedInput is { } s ? $" (input: {s})" : ""));
                    broken += r.Findings.Count;
                }
            }
            finally
            {
                Directory.Delete(work, recursive: true);
            }
            return broken == 0 ? 0 : 1;
        });
        return ProgramErrors.Invoke(root, args, "paretoq-fuzz");
    }
}
