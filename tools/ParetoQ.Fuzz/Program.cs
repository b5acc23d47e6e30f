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
        var timeLimit = new Option<double>("--time-limit")
        {
            Recursive = true, Description = "Seconds one case may take",
            DefaultValueFactory = _ => Fuzzer.DefaultLimits.PerCase.TotalSeconds,
        };
        timeLimit.Check(s => { if (!(s > 0)) throw new ArgumentException($"--time-limit {s} must be positive"); });
        var memory = new Option<double>("--memory-multiple")
        {
            Recursive = true,
            Description = "Bytes one case may allocate, as a multiple of its input's size (plus 16 MiB)",
            DefaultValueFactory = _ => Fuzzer.DefaultLimits.MemoryMultiple,
        };
        memory.Check(m => { if (!(m > 0)) throw new ArgumentException($"--memory-multiple {m} must be positive"); });
        var findings = new Option<string>("--findings")
        {
            Description = "Where inputs that broke the contract are saved", DefaultValueFactory = _ => "fuzz-findings",
        };

        var root = new RootCommand(
            "paretoq-fuzz: mutation fuzzing of every reader of untrusted bytes; afl, seeds and replay for " +
            "coverage-guided fuzzing and its corpus")
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
        root.Subcommands.Add(AflCommand(timeLimit, memory));
        root.Subcommands.Add(SeedsCommand());
        root.Subcommands.Add(ReplayCommand(timeLimit, memory));
        return ProgramErrors.Invoke(root, args, "paretoq-fuzz");
    }

    private static Option<string> FormatOption() =>
        new Option<string>("--format") { Description = string.Join(", ", Fuzzer.Formats), Required = true }
            .AcceptOnlyFromAmong(Fuzzer.Formats);

    private static FuzzLimits Limits(ParseResult p, Option<double> timeLimit, Option<double> memory) =>
        Fuzzer.DefaultLimits with
        {
            PerCase = TimeSpan.FromSeconds(p.GetValue(timeLimit)), MemoryMultiple = p.GetValue(memory),
        };

    // paretoq-fuzz afl --format F: the target AFL++ runs (tools/fuzz-coverage.sh), with ParetoQ.Runtime.dll
    // instrumented by SharpFuzz. An input that breaks the contract throws, which AFL records as a crash.
    private static Command AflCommand(Option<double> timeLimit, Option<double> memory)
    {
        var format = FormatOption();
        var command = new Command("afl", "Run one reader under AFL++ (SharpFuzz): an input that breaks the " +
            "contract is a crash") { format };
        command.SetAction(p =>
        {
            string work = Directory.CreateTempSubdirectory("paretoq-afl-").FullName;
            try
            {
                // Instrumented code may run only inside Run, once SharpFuzz has mapped AFL's coverage memory: the
                // target (our writers make its seed) is made on the first input.
                Func<byte[], string?>? check = null;
                var limits = Limits(p, timeLimit, memory);
                SharpFuzz.Fuzzer.OutOfProcess.Run(stream =>
                {
                    check ??= Fuzzer.Checker(p.GetValue(format)!, work, limits);
                    using var buffer = new MemoryStream();
                    stream.CopyTo(buffer);
                    if (check(buffer.ToArray()) is { } problem) throw new FuzzContractException(problem);
                });
            }
            finally
            {
                Directory.Delete(work, recursive: true);
            }
            return 0;
        });
        return command;
    }

    // paretoq-fuzz seeds --out DIR: each format's seed, DIR/FORMAT/seed, the start of a corpus.
    private static Command SeedsCommand()
    {
        var output = new Option<string>("--out") { Description = "Corpus directory", Required = true };
        var command = new Command("seeds", "Write each format's seed file to OUT/FORMAT/seed") { output };
        command.SetAction(p =>
        {
            string work = Directory.CreateTempSubdirectory("paretoq-seeds-").FullName;
            try
            {
                foreach (string f in Fuzzer.Formats)
                {
                    string dir = Directory.CreateDirectory(Path.Combine(p.GetValue(output)!, f)).FullName;
                    File.WriteAllBytes(Path.Combine(dir, "seed"), Fuzzer.Seed(f, Path.Combine(work, f)));
                }
            }
            finally
            {
                Directory.Delete(work, recursive: true);
            }
            return 0;
        });
        return command;
    }

    // paretoq-fuzz replay DIR...: every file under DIR/FORMAT/ through FORMAT's reader; exit 1 if any breaks the
    // contract.
    private static Command ReplayCommand(Option<double> timeLimit, Option<double> memory)
    {
        var dirs = new Argument<string[]>("dirs") { Description = "Corpus directories, one subdirectory per format" };
        var command = new Command("replay", "Run every corpus file through its format's reader") { dirs };
        command.SetAction(p =>
        {
            var results = CorpusReplay.Run(p.GetValue(dirs)!, Limits(p, timeLimit, memory));
            foreach (var r in results.Where(r => r.Problem is not null))
                Console.WriteLine($"{r.Format} {r.File}: {r.Problem}");
            Console.WriteLine($"{results.Count} inputs replayed, {results.Count(r => r.Problem is not null)} broke " +
                "the contract");
            return results.All(r => r.Problem is null) ? 0 : 1;
        });
        return command;
    }
}
