//! Generation of the BPF_PROG_TYPE_CGROUP_DEVICE program for cgroup v2.
//!
//! The program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
//! u32 minor; }` where access_type is `(ACC_* << 16) | DEV_*`, and returns 1
//! to allow, 0 to deny. Layout:
//!
//! ```text
//! r2 = type, r3 = requested access, r4 = major, r5 = minor
//! for each rule, last first:            (last matching rule wins)
//!     if type/major/minor/access do not match: goto next rule
//!     r0 = allow; exit
//! r0 = 0; exit                          (default deny)
//! ```
//!
//! A rule that matches everything ends the program early: the verifier
//! rejects unreachable instructions, and nothing after it could decide.

use super::{Kind, Rule, ACC_ALL};

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Insn {
    pub code: u8,
    /// dst_reg in one nibble, src_reg in the other (see [`regs`]).
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Instruction classes, sizes, modes, operations (linux/bpf_common.h, bpf.h).
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

/// BPF_DEVCG_DEV_* device types in the context's access_type.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

pub(crate) const R0: u8 = 0;
pub(crate) const R1: u8 = 1;
pub(crate) const R2: u8 = 2;
pub(crate) const R3: u8 = 3;
pub(crate) const R4: u8 = 4;
pub(crate) const R5: u8 = 5;

/// Packs dst and src registers the way the kernel's bitfield lays them out.
pub(crate) const fn regs(dst: u8, src: u8) -> u8 {
    if cfg!(target_endian = "little") {
        (dst & 0x0f) | (src << 4)
    } else {
        (dst << 4) | (src & 0x0f)
    }
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: regs(dst, src),
        off,
        imm,
    }
}

/// dst = *(u32 *)(src + off)
fn load_word(dst: u8, src: u8, off: i16) -> Insn {
    insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
}
fn alu32_imm(op: u8, dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU | op | BPF_K, dst, 0, 0, imm)
}
fn mov32_reg(dst: u8, src: u8) -> Insn {
    insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
}
fn jmp_imm(op: u8, dst: u8, imm: i32) -> Insn {
    insn(BPF_JMP | op | BPF_K, dst, 0, 0, imm)
}
fn jmp_reg(op: u8, dst: u8, src: u8) -> Insn {
    insn(BPF_JMP | op | BPF_X, dst, src, 0, 0)
}
fn exit() -> Insn {
    insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
}

/// Builds the filter for an ordered rule list.
pub(crate) fn device_filter(rules: &[Rule]) -> Vec<Insn> {
    let mut prog = vec![
        load_word(R2, R1, 0),
        alu32_imm(BPF_AND, R2, 0xffff),
        load_word(R3, R1, 0),
        alu32_imm(BPF_RSH, R3, 16),
        load_word(R4, R1, 4),
        load_word(R5, R1, 8),
    ];
    for rule in rules.iter().rev() {
        let mut block = Vec::new();
        // Indexes (in block) of the jumps to the next rule.
        let mut skips = Vec::new();
        if rule.kind != Kind::All {
            let ty = if rule.kind == Kind::Block {
                DEV_BLOCK
            } else {
                DEV_CHAR
            };
            skips.push(block.len());
            block.push(jmp_imm(BPF_JNE, R2, ty));
            if let Some(major) = rule.major {
                skips.push(block.len());
                block.push(jmp_imm(BPF_JNE, R4, major as i32));
            }
            if let Some(minor) = rule.minor {
                skips.push(block.len());
                block.push(jmp_imm(BPF_JNE, R5, minor as i32));
            }
        }
        if rule.access != ACC_ALL {
            // r1 = requested & rule.access (r1, the context, is no longer needed).
            block.push(mov32_reg(R1, R3));
            block.push(alu32_imm(BPF_AND, R1, i32::from(rule.access)));
            skips.push(block.len());
            if rule.allow {
                // An allow rule must grant every requested bit.
                block.push(jmp_reg(BPF_JNE, R1, R3));
            } else {
                // A deny rule applies if it names any requested bit.
                block.push(jmp_imm(BPF_JEQ, R1, 0));
            }
        }
        block.push(insn(
            BPF_ALU | BPF_MOV | BPF_K,
            R0,
            0,
            0,
            i32::from(rule.allow),
        ));
        block.push(exit());
        let len = block.len();
        for &j in &skips {
            // Relative to the instruction after the jump; blocks are tiny.
            block[j].off = (len - j - 1) as i16;
        }
        prog.extend(block);
        if skips.is_empty() {
            return prog;
        }
    }
    prog.push(insn(BPF_ALU | BPF_MOV | BPF_K, R0, 0, 0, 0));
    prog.push(exit());
    prog
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::tests::{default_rules, oci};
    use crate::devices::{parse_rules, ACC_MKNOD, ACC_READ, ACC_WRITE};

    /// A tiny interpreter for the instructions device_filter emits.
    fn run(prog: &[Insn], dev: i32, access: u8, major: u32, minor: u32) -> u64 {
        let ctx = [(u32::from(access) << 16) | dev as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = if cfg!(target_endian = "little") {
                ((i.regs & 0x0f) as usize, (i.regs >> 4) as usize)
            } else {
                ((i.regs >> 4) as usize, (i.regs & 0x0f) as usize)
            };
            pc += 1;
            match i.code {
                0x61 => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[(i.off / 4) as usize]);
                }
                0x54 => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                0x74 => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                0xbc => r[dst] = r[src] as u32 as u64,
                0xb4 => r[dst] = i.imm as u32 as u64,
                0x55 if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                0x15 if r[dst] == i.imm as i64 as u64 => pc += i.off as usize,
                0x5d if r[dst] != r[src] => pc += i.off as usize,
                0x55 | 0x15 | 0x5d => {}
                0x95 => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn reference(rules: &[Rule], kind: Kind, access: u8, major: u32, minor: u32) -> u64 {
        rules
            .iter()
            .rev()
            .find(|r| r.matches(kind, major, minor, access))
            .map_or(0, |r| u64::from(r.allow))
    }

    fn check_against_reference(rules: &[Rule]) {
        let prog = device_filter(rules);
        // Every jump lands inside the program and it ends with exit.
        for (pc, i) in prog.iter().enumerate() {
            if matches!(i.code, 0x55 | 0x15 | 0x5d) {
                assert!(pc + 1 + (i.off as usize) < prog.len());
            }
        }
        assert_eq!(prog.last().map(|i| i.code), Some(0x95));
        let accesses = [
            ACC_READ,
            ACC_WRITE,
            ACC_MKNOD,
            ACC_READ | ACC_WRITE,
            ACC_ALL,
        ];
        for (kind, dev) in [(Kind::Char, DEV_CHAR), (Kind::Block, DEV_BLOCK)] {
            for (major, minor) in [(1, 3), (1, 5), (1, 7), (5, 2), (136, 0), (136, 9), (8, 0)] {
                for access in accesses {
                    assert_eq!(
                        run(&prog, dev, access, major, minor),
                        reference(rules, kind, access, major, minor),
                        "{kind:?} {major}:{minor} access {access:#b} rules {rules:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn empty_rule_list_denies_everything() {
        let prog = device_filter(&[]);
        assert_eq!(prog.len(), 8);
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 3), 0);
    }

    #[test]
    fn deny_all_first_ends_the_program_without_default() {
        let rules = parse_rules(&[
            oci(false, "a", None, None, "rwm"),
            oci(true, "c", Some(1), Some(3), "rwm"),
        ])
        .unwrap();
        let prog = device_filter(&rules);
        // prologue 6 + "c 1:3 rwm" (3 jumps + mov + exit) + "a" (mov + exit)
        assert_eq!(prog.len(), 6 + 5 + 2);
        assert_eq!(prog[prog.len() - 2].imm, 0);
        check_against_reference(&rules);
    }

    #[test]
    fn trailing_allow_all_short_circuits() {
        let rules = parse_rules(&[
            oci(false, "c", Some(1), Some(3), "rwm"),
            oci(true, "a", None, None, "rwm"),
        ])
        .unwrap();
        let prog = device_filter(&rules);
        assert_eq!(prog.len(), 6 + 2);
        assert_eq!(run(&prog, DEV_CHAR, ACC_WRITE, 1, 3), 1);
    }

    #[test]
    fn filter_matches_reference_semantics() {
        check_against_reference(&parse_rules(&default_rules()).unwrap());
        check_against_reference(
            &parse_rules(&[
                oci(true, "a", None, None, "rwm"),
                oci(false, "c", Some(1), None, "w"),
                oci(true, "c", Some(1), Some(3), "rw"),
                oci(false, "b", None, None, "m"),
            ])
            .unwrap(),
        );
        check_against_reference(
            &parse_rules(&[
                oci(true, "c", None, None, "r"),
                oci(true, "c", Some(1), Some(3), "w"),
                oci(false, "c", Some(136), None, "rw"),
            ])
            .unwrap(),
        );
    }

    #[test]
    fn write_to_read_only_device_is_denied() {
        let rules = parse_rules(&[
            oci(false, "a", None, None, "rwm"),
            oci(true, "c", Some(1), Some(3), "r"),
        ])
        .unwrap();
        let prog = device_filter(&rules);
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(run(&prog, DEV_CHAR, ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&prog, DEV_BLOCK, ACC_READ, 1, 3), 0);
    }
}
